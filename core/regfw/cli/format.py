"""Text for the terminal: numbers, durations and aligned tables for ``regfw runs`` and ``compare``."""

from __future__ import annotations

import math

from regfw.figures import figure


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return figure(value)  # the digits the store (and MLflow's UI) holds
    return str(value)


def fmt_mean_std(stat) -> str:
    if stat is None:
        return "-"
    mean, std, _ = stat
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std) if not math.isfinite(std) else f'{std:.2g}'}"


def fmt_duration(seconds: float | None, digits: int = 1) -> str:
    """``4.2s``, ``3m05s``, ``2h01m``; ``digits``: decimals of the seconds below a minute."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.{digits}f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


MAX_CELL = 60  # characters: a 10,000-character run name must not make the table that wide


def clip(text: str, limit: int = MAX_CELL) -> str:
    """A table cell on one line (a newline in a stored name would break the rows) and at most
    ``limit`` characters, the cut marked with "..."."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """Plain aligned columns; the columns in ``right`` are right-aligned (numbers)."""
    headers, rows = [clip(h) for h in headers], [[clip(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells):
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def echo_table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> None:
    """Print a table: drawn by rich on a terminal, the plain :func:`table` text when piped (scripts
    and tests read that, so it stays stable). rich is imported only here, when it draws."""
    import click

    stream = click.get_text_stream("stdout")
    if not stream.isatty():
        click.echo(table(headers, rows, right))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    drawn = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for i, header in enumerate(headers):
        drawn.add_column(clip(header), justify="right" if i in right else "left", overflow="fold")
    for row in rows:
        drawn.add_row(*map(clip, row))
    Console(file=stream, highlight=False, markup=False, emoji=False).print(drawn)


def short_id(run_id: str) -> str:
    return run_id[:8]
