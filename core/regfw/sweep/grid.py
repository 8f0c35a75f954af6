"""Sweep grids: ``--set KEY=VALUES`` and ``--seeds`` parsed into axes, every point resolved.

Grid syntax (see docs/comparing.md):

- ``;`` always separates axis values: ``optimizer.lr=0.1;0.01``.
- For a scalar parameter ``,`` separates them too: ``optimizer.lr=0.001,0.01,0.1``.
- For a list-typed parameter (``model.hidden``, ``train.metrics``) a comma list is ONE value:
  ``model.hidden=64,64`` is the single value ``[64, 64]``. Its axis values are separated by ``;``
  (``model.hidden=64;256;64,64``) or written as bracketed lists separated by commas
  (``model.hidden=[64],[256],[64,64]``).
- A ``--set`` with a single value is an ordinary override shared by every point.

Every point is resolved and validated here, before anything is written: a bad key or value is one
line and no run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from regfw.errors import RegfwError

AXIS_SEP = ";"
MAX_SEEDS = 100_000  # a range is counted before it is listed: 0-100000000 must not take minutes
DEFAULT_MAX_POINTS = 1000  # a bigger grid needs --max-points: 100 lr values x 100 seeds is rarely meant


@dataclass
class Axis:
    key: str
    values: list[str]  # raw texts, typed later exactly like a --set value
    list_typed: bool = False

    def shown(self) -> str:
        """``lr=0.001,0.01,0.1``: the short key and the values as the user would type them."""
        short = self.key.rsplit(".", 1)[-1]
        return f"{short}=" + (AXIS_SEP if self.list_typed else ",").join(self.values)


@dataclass
class Point:
    index: int
    values: dict  # axis key -> raw text
    config: object = None  # regfw.config.Config
    run_name: str = ""

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values.items())


@dataclass
class Grid:
    experiment: str
    axes: list[Axis]
    points: list[Point]


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside brackets: ``[1,2],[3]`` -> ``["[1,2]", "[3]"]``."""
    pieces, depth, current = [], 0, []
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == sep and depth == 0:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return pieces


def split_values(key: str, text: str, list_typed: bool) -> list[str]:
    """The axis values of one ``--set KEY=TEXT`` (a single value means: not an axis)."""
    if AXIS_SEP in text:
        pieces = text.split(AXIS_SEP)
    elif list_typed:
        pieces = split_top_level(text)
        bracketed = all(p.strip().startswith("[") and p.strip().endswith("]") for p in pieces)
        if len(pieces) > 1 and not bracketed:
            pieces = [text]  # "64,256" for a list parameter is the one list [64, 256]
    else:
        pieces = split_top_level(text)
    pieces = [p.strip() for p in pieces]
    if len(pieces) > 1 and any(p == "" for p in pieces):
        raise RegfwError(f"--set {key}={text}: empty value in the list of sweep values")
    seen = set()
    for piece in pieces:
        if piece in seen:
            raise RegfwError(f"--set {key}={text}: value '{piece}' is given twice")
        seen.add(piece)
    return pieces


def is_list_param(registry, key: str, names: dict) -> bool:
    """Whether ``key`` names a list-typed parameter for the component(s) it may refer to."""
    from regfw.config import PARTS
    from regfw.train_schema import TRAIN_SCHEMA

    section, _, sub = key.partition(".")
    if section == "train" and sub in TRAIN_SCHEMA:
        return TRAIN_SCHEMA[sub].type is list
    if section in PARTS and sub:
        for name in names.get(section, ()):
            try:
                entry = registry.get(section, name)
            except RegfwError:
                continue
            param = entry.params.get(sub)
            if param is not None and param.type is list:
                return True
    return False


def parse_seeds(text: str | None) -> list[str] | None:
    """``--seeds 0,1,2`` or a range ``0-4`` (inclusive)."""
    if text is None:
        return None
    text = text.strip()
    if "-" in text and "," not in text:
        low, _, high = text.partition("-")
        try:
            low_n, high_n = int(low), int(high)
        except ValueError:
            raise RegfwError(f"--seeds expects integers like 0,1,2 or a range 0-4, got '{text}'") from None
        if high_n < low_n:
            raise RegfwError(f"--seeds range {text} is empty")
        if low_n < 0:
            raise RegfwError(f"--seeds expects non-negative integers, got '{text}'")
        if high_n - low_n + 1 > MAX_SEEDS:
            raise RegfwError(f"--seeds {text} is {high_n - low_n + 1:,} seeds; at most {MAX_SEEDS:,} in one sweep")
        return [str(n) for n in range(low_n, high_n + 1)]
    seeds = split_values("seed", text, False)
    for seed in seeds:
        try:
            if int(seed) < 0:
                raise ValueError
        except ValueError:
            raise RegfwError(f"--seeds expects non-negative integers like 0,1,2, got '{seed}'") from None
    return seeds


def build_grid(registry, experiment: str, *, sets=(), seeds: str | None = None, config_file: dict | None = None,
               swaps: dict | None = None, flags: dict | None = None, flag_options: dict | None = None,
               max_points: int | None = None) -> Grid:
    """Parse the axes and resolve (and so validate) every point's configuration.

    The grid is counted before any point is resolved: above ``max_points`` it is refused with
    its size. ``flag_options`` names the option that set each key in ``flags`` (for messages)."""
    from regfw.config import PARTS, parse_set, resolve, split_assignment
    from regfw.naming import point_names

    swaps = {k: v for k, v in (swaps or {}).items() if v is not None}
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    registry.get("experiment", experiment)  # an unknown experiment: did-you-mean now

    parsed = [split_assignment(item, "optimizer.lr=0.1,0.01") for item in sets]
    keys = [key for key, _ in parsed]
    for key in keys:
        if keys.count(key) > 1:
            raise RegfwError(f"--set {key} is given twice; put all its sweep values in one --set")

    # Which component each part may be, to know whether a key is list-typed. A part --set chooses
    # goes into the base too: the experiment's own choice may be ambiguous (see Registry.settle).
    chosen_parts = {key: split_values(key, text, False) for key, text in parsed if key in PARTS}
    base = resolve(registry, experiment, config_file=config_file,
                   swaps=swaps | {key: values[0] for key, values in chosen_parts.items()})
    names = {part: chosen_parts.get(part, [getattr(base, part).name]) for part in PARTS}

    axes: list[Axis] = []
    slots: list[tuple[str, object]] = []  # (key, fixed text) or (key, Axis), in the user's order
    for key, text in parsed:
        list_typed = is_list_param(registry, key, names)
        values = split_values(key, text, list_typed)
        if len(values) > 1:
            axis = Axis(key, values, list_typed)
            axes.append(axis)
            slots.append((key, axis))
        else:
            slots.append((key, text))
    seed_values = parse_seeds(seeds)
    if seed_values is not None:
        if "seed" in keys:
            raise RegfwError("give the seeds either with --seeds or with --set seed=..., not both")
        axis = Axis("seed", seed_values)
        if len(seed_values) > 1:
            axes.append(axis)
            slots.append(("seed", axis))
        else:
            slots.append(("seed", seed_values[0]))

    flag_keys = set(flags) | set(swaps)
    for axis in axes:
        if axis.key in flag_keys:
            option = (flag_options or {}).get(axis.key, "an option")
            raise RegfwError(f"{axis.key} is swept by --set/--seeds and also fixed by {option}; drop one")
    count = 1
    for axis in axes:
        count *= len(axis.values)
    if max_points is not None and count > max_points:
        raise RegfwError(f"the grid has {count:,} points, more than the {max_points:,} allowed; "
                         f"pass --max-points {count} to run them all")

    points = []
    for index, combo in enumerate(itertools.product(*(axis.values for axis in axes))):
        chosen = {axis.key: value for axis, value in zip(axes, combo)}
        texts = [f"{key}={chosen[key] if isinstance(slot, Axis) else slot}" for key, slot in slots]
        try:
            config = resolve(registry, experiment, config_file=config_file, sets=parse_set(texts),
                             swaps=swaps, flags=flags)
        except RegfwError as exc:
            where = " ".join(f"{k}={v}" for k, v in chosen.items())
            raise RegfwError(f"{exc} (sweep point {where})" if where else str(exc)) from None
        points.append(Point(index, chosen, config))
    for point, name in zip(points, point_names(registry, [p.config for p in points], [a.key for a in axes])):
        point.run_name = name
    return Grid(experiment, axes, points)
