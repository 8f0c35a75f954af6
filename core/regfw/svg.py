"""Simple 2-D charts as standalone SVG text: an axes box with 1-2-5 ticks (or decades on a log y
axis), lines, dots, a legend and a title. Standard library only: every run writes its charts, and
matplotlib cost ~1.2 CPU s to import plus 60-140 ms a plot for the same few lines."""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from typing import Sequence

WIDTH, HEIGHT = 600, 400
# matplotlib's tab10, so the charts keep the colours users know from the earlier PNGs
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
MAX_LINE_POINTS = 1000  # per polyline: more is invisible at 600 px and only grows the file
MAX_DOTS = 2000
LIMIT = 1e150  # values beyond are clipped: spans and scales stay finite floats
CHAR_W = 7.2  # width of a 12 px sans-serif digit (a little more than most letters), for a layout without measuring text
FONT = 'font-family="DejaVu Sans, Arial, Helvetica, sans-serif"'
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass
class Series:
    """One thing to draw: a line through ``(xs, ys)``, or dots at them when ``dots``."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    dots: bool = False
    color: str | None = None


def chart(series: Sequence[Series], title: str = "", xlabel: str = "", ylabel: str = "", log_y: bool = False,
          integer_x: bool = False) -> str:
    """The whole SVG document. ``log_y`` is honoured only when every finite y is positive;
    non-finite points are left out (a line breaks there)."""
    parts = [[_finite(s.xs, s.ys)] if s.dots else _segments(s.xs, s.ys) for s in series]
    ys = [y for segs in parts for seg in segs for _, y in seg]
    xs = [x for segs in parts for seg in segs for x, _ in seg]
    log_y = log_y and bool(ys) and min(ys) > 0
    x_lo, x_hi = _padded(xs)
    if log_y:
        e_lo, e_hi = _padded([math.log10(y) for y in ys])
        y_ticks = log_ticks(10 ** e_lo, 10 ** e_hi)
        y_scale = math.log10
    else:
        e_lo, e_hi = _padded(ys)
        y_ticks = nice_ticks(e_lo, e_hi)
        y_scale = float
    x_ticks = nice_ticks(x_lo, x_hi, min_step=1 if integer_x else 0)
    x_labels, y_labels = tick_labels(x_ticks), (log_labels(y_ticks) if log_y else tick_labels(y_ticks))

    left = 34 + CHAR_W * max((len(s) for s in y_labels), default=1)
    box = (left, 34.0, WIDTH - 16.0, HEIGHT - 48.0)  # x0, y0, x1, y1 in pixels
    x0, y0, x1, y1 = box

    def px(x: float) -> float:
        return x0 + (x - x_lo) / (x_hi - x_lo) * (x1 - x0)

    def py(y: float) -> float:
        return y1 - (y_scale(y) - e_lo) / (e_hi - e_lo) * (y1 - y0)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" {FONT} font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>']
    grid = [f"M{px(t):.1f} {y0:.1f}V{y1:.1f}" for t in x_ticks] + [f"M{x0:.1f} {py(t):.1f}H{x1:.1f}" for t in y_ticks]
    out.append(f'<path d="{"".join(grid)}" stroke="#e5e5e5" stroke-width="1" fill="none"/>')
    for t, label in zip(x_ticks, x_labels):
        out.append(f'<text class="xtick" x="{px(t):.1f}" y="{y1 + 16:.1f}" text-anchor="middle">{label}</text>')
    for t, label in zip(y_ticks, y_labels):
        out.append(f'<text class="ytick" x="{x0 - 5:.1f}" y="{py(t) + 4:.1f}" text-anchor="end">{label}</text>')
    ticks = [f"M{px(t):.1f} {y1:.1f}v4" for t in x_ticks] + [f"M{x0:.1f} {py(t):.1f}h-4" for t in y_ticks]
    ticks += [f"M{x0:.1f} {py(t):.1f}h-2" for t in (log_minor(10 ** e_lo, 10 ** e_hi, y_ticks) if log_y else [])]
    out.append(f'<path d="{"".join(ticks)}" stroke="#333" stroke-width="1"/>')

    out.append(f'<clipPath id="box"><rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}"/>'
               "</clipPath>")
    out.append('<g clip-path="url(#box)">')
    drawn = []  # pixels the data covers, for the legend's placement
    for i, (s, segs) in enumerate(zip(series, parts)):
        color = s.color or PALETTE[i % len(PALETTE)]
        if s.dots:
            points = [(px(x), py(y)) for x, y in _thin(segs[0], MAX_DOTS)]
            dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5"/>' for a, b in points)
            out.append(f'<g fill="{color}" fill-opacity="0.8">{dots}</g>')
            drawn += points
        for seg in [] if s.dots else segs:
            points = [(px(x), py(y)) for x, y in _thin(seg, MAX_LINE_POINTS)]
            coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.8" '
                       'stroke-linejoin="round" stroke-linecap="round"/>')
            drawn += _along(points)
    out.append("</g>")
    out.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" fill="none" '
               'stroke="#333" stroke-width="1"/>')

    out += _legend(series, box, drawn)
    middle = 'text-anchor="middle"'
    if title:
        out.append(f'<text class="title" x="{WIDTH / 2}" y="22" {middle} font-size="14">'
                   f"{text(title, int(WIDTH / 8.4))}</text>")
    if xlabel:
        out.append(f'<text class="xlabel" x="{(x0 + x1) / 2:.1f}" y="{HEIGHT - 12}" {middle}>'
                   f"{text(xlabel, int((x1 - x0) / CHAR_W))}</text>")
    if ylabel:
        turn = f"translate(16 {(y0 + y1) / 2:.1f}) rotate(-90)"
        out.append(f'<text class="ylabel" transform="{turn}" {middle}>{text(ylabel, int((y1 - y0) / CHAR_W))}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _legend(series: Sequence[Series], box: tuple, drawn: list) -> list[str]:
    """A legend in the corner of the axes that covers the fewest drawn points (matplotlib's 'best')."""
    labels = [(i, text(s.label, 40)) for i, s in enumerate(series) if s.label]
    if not labels:
        return []
    x0, y0, x1, y1 = box
    w = 36 + CHAR_W * max(len(html.unescape(t)) for _, t in labels)
    h = 8 + 18 * len(labels)
    corners = [(x1 - 8 - w, y0 + 8), (x0 + 8, y0 + 8), (x1 - 8 - w, y1 - 8 - h), (x0 + 8, y1 - 8 - h)]

    def covered(corner):
        lx, ly = corner
        return sum(1 for a, b in drawn if lx - 4 <= a <= lx + w + 4 and ly - 4 <= b <= ly + h + 4)

    lx, ly = min(corners, key=covered)  # the first corner (upper right) wins a tie
    out = [f'<rect x="{lx:.1f}" y="{ly:.1f}" width="{w:.1f}" height="{h}" fill="#fff" fill-opacity="0.85" '
           'stroke="#ccc" rx="3"/>']
    for row, (i, label) in enumerate(labels):
        s = series[i]
        color = s.color or PALETTE[i % len(PALETTE)]
        cy = ly + 13 + 18 * row
        if s.dots:
            out.append(f'<circle cx="{lx + 17:.1f}" cy="{cy:.1f}" r="3" fill="{color}"/>')
        else:
            out.append(f'<path d="M{lx + 8:.1f} {cy:.1f}h18" stroke="{color}" stroke-width="1.8"/>')
        out.append(f'<text class="legend" x="{lx + 32:.1f}" y="{cy + 4:.1f}">{label}</text>')
    return out


def text(value: str, limit: int) -> str:
    """User text (a run's title) made safe for XML: escaped, characters XML forbids removed, cut."""
    value = _NOT_XML.sub("", str(value))
    if len(value) > limit:
        value = value[: limit - 3] + "..."
    return html.escape(value, quote=True)


def _finite(xs: Sequence[float], ys: Sequence[float]) -> list[tuple[float, float]]:
    return [(_clip(x), _clip(y)) for x, y in zip(xs, ys) if _ok(x) and _ok(y)]


def _segments(xs: Sequence[float], ys: Sequence[float]) -> list[list[tuple[float, float]]]:
    """A line's finite runs: a NaN or inf breaks the line rather than being joined across."""
    try:  # the usual case, a curve of plain finite floats within range, in one pass without per-point calls
        if all(-LIMIT <= v <= LIMIT for v in xs) and all(-LIMIT <= v <= LIMIT for v in ys):
            points = list(zip(map(float, xs), map(float, ys)))
            return [points] if points else []
    except TypeError:  # something that is not a number: point by point below
        pass
    segs, current = [], []
    for x, y in zip(xs, ys):
        if _ok(x) and _ok(y):
            current.append((_clip(x), _clip(y)))
        elif current:
            segs.append(current)
            current = []
    return [s for s in segs + [current] if s]


def _ok(v) -> bool:
    try:
        return math.isfinite(v)
    except TypeError:
        return False


def _clip(v: float) -> float:
    return max(-LIMIT, min(LIMIT, float(v)))


def _thin(points: list, most: int) -> list:
    """At most ``most`` points, evenly spaced, the first and the last kept."""
    n = len(points)
    if n <= most:
        return points
    return [points[round(i * (n - 1) / (most - 1))] for i in range(most)]


def _along(points: list) -> list:
    """Points every few pixels along a line, so a legend is not put across a long straight stretch."""
    out = points[:1]
    hypot = math.hypot
    for (a, b), (c, d) in zip(points, points[1:]):
        n = min(200, int(hypot(c - a, d - b) / 6) + 1)
        if n == 1:  # a step under 6 px (most of a long curve's): its end point is enough
            out.append((c, d))
        else:
            out += [(a + (c - a) * k / n, b + (d - b) * k / n) for k in range(1, n + 1)]
    return out


def _padded(values: list[float]) -> tuple[float, float]:
    """The data's range with 5% room each side, never empty."""
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi)):
        room = abs(lo) * 0.05 or 1.0
        return lo - room, hi + room
    room = (hi - lo) * 0.05
    return lo - room, hi + room


def nice_ticks(lo: float, hi: float, target: int = 6, min_step: float = 0) -> list[float]:
    """Round values inside [lo, hi], 1, 2 or 5 times a power of ten apart, about ``target`` of them."""
    raw = (hi - lo) / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * 0.999)
    step = max(step, min_step)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    for k in range(first, first + 2 * target + 4):
        value = k * step
        if value > hi + step * 1e-9:
            break
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Decades inside [lo, hi] (every 2, 5, 10 ... decades when many); 2 and 5 between them too when fewer
    than three decades are inside; plain 1-2-5 steps when even that gives fewer than three values
    (a loss from 87 to 102), so a short curve still gets a few labelled values."""
    first, last = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
    if last - first >= 2:  # every 1, 2, 5, 10 ... decades
        return [10.0 ** round(k) for k in nice_ticks(math.log10(lo), math.log10(hi), min_step=1)]
    ticks = [m * 10.0 ** k for k in range(first - 1, last + 1) for m in (1, 2, 5) if lo <= m * 10.0 ** k <= hi]
    return ticks if len(ticks) >= 3 else nice_ticks(lo, hi, target=5)


def log_minor(lo: float, hi: float, major: list[float]) -> list[float]:
    """Unlabelled marks at 2..9 times each decade (up to six decades; more would be a smear)."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if last - first > 6:
        return []
    marks = [m * 10.0 ** k for k in range(first, last + 1) for m in range(1, 10) if lo <= m * 10.0 ** k <= hi]
    return [t for t in marks if not any(abs(t - u) <= 1e-9 * u for u in major)]


def tick_labels(ticks: list[float]) -> list[str]:
    """Labels with as many digits as the step needs; scientific notation for very large or small values."""
    if not ticks:
        return []
    step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(ticks[0]) or 1.0
    big = max(abs(t) for t in ticks)
    if big >= 1e5 or big < 1e-3:
        digits = max(0, math.floor(math.log10(big or 1)) - math.floor(math.log10(step) + 1e-9))
        return [_short_e(f"{t:.{digits}e}") for t in ticks]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [f"{t:.{decimals}f}" for t in ticks]


def log_labels(ticks: list[float]) -> list[str]:
    """1e-3 … 0.01, 0.1, 1, 10, 100 … 1e3: plain where short."""
    return [f"{t:g}" if 1e-2 <= t < 1e3 else _short_e(f"{t:.0e}") for t in ticks]


def _short_e(label: str) -> str:
    """'2.0e-05' -> '2.0e-5', '1e+03' -> '1e3'."""
    mantissa, _, exponent = label.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else label
