"""A recorded sweep read back as the grid ``regfw sweep`` runs: its parent's axes, and each child
run's own configuration (config.yaml) at its own index, so `regfw rerun SWEEP_PARENT_ID` trains the
same points through the same sweep machinery (:func:`regfw.sweep.run_sweep`) and compares each new
child with the original child of the same index."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from regfw.errors import RegfwError
from regfw.reproduce.record import Recorded, check_data_files, load_recorded
from regfw.store import tags as T


@dataclass
class RecordedSweep:
    parent: Recorded
    points: list[Recorded]  # the original child runs, by sweep index
    grid: object  # regfw.sweep.Grid: the same points, configurations as recorded (and --set on top)


def _children(client, parent: Recorded) -> list[Recorded]:
    from regfw.runs.queries import search

    sweep_id = parent.tags.get(T.SWEEP_ID)
    if not sweep_id:
        raise RegfwError(f"run {parent.run_id} is a sweep's parent without a {T.SWEEP_ID} tag: its points cannot "
                         "be found")
    rows = [row for row in search(client, parent.uri, parent.experiment_name, sweep=sweep_id)
            if row.tags.get(T.PARENT) == parent.run_id]
    if not rows:
        raise RegfwError(f"sweep {sweep_id} (run {parent.run_id}) has no point runs to rerun")

    def index(row) -> int:
        text = row.tags.get(T.SWEEP_INDEX, "")
        return int(text) if text.isdigit() else 1 << 30

    rows.sort(key=lambda row: (index(row), row.start_time or 0))
    return [load_recorded(parent.uri, row.run_id, client) for row in rows]


def _axes(registry, parent: Recorded, configs) -> list:
    from regfw.config import PARTS
    from regfw.sweep import Axis
    from regfw.sweep.grid import is_list_param

    try:
        recorded = json.loads(parent.tags.get(T.SWEEP_AXES) or "{}")
    except json.JSONDecodeError:
        recorded = {}
    if not isinstance(recorded, dict):
        recorded = {}
    names = {part: sorted({getattr(c, part).name for c in configs}) for part in PARTS}
    return [Axis(key, [str(v) for v in values], is_list_param(registry, key, names))
            for key, values in recorded.items() if isinstance(values, list)]


def _point_values(axes, recorded: Recorded, index: int) -> dict:
    """The point's axis values as the sweep labelled it: the index-th combination of the axes (what
    build_grid made), else the recorded label read back (a run older than the axes tag)."""
    combos = list(itertools.islice(itertools.product(*(a.values for a in axes)), index, index + 1)) if axes else []
    if combos:
        return {axis.key: value for axis, value in zip(axes, combos[0])}
    label = recorded.tags.get(T.SWEEP_POINT, "-")
    pairs = [piece.split("=", 1) for piece in label.split() if "=" in piece]
    return {key: value for key, value in pairs}


def load_sweep(registry, parent: Recorded, sets=(), client=None) -> RecordedSweep:
    """Every point of the sweep ``parent`` leads, each configuration validated against the plugins
    installed now (``sets`` applied to every point); one line and no run on the first that fails."""
    from regfw.store import open_client
    from regfw.sweep import Grid, Point

    client = client or open_client(parent.uri)
    children = _children(client, parent)
    configs = []
    for child in children:
        try:
            configs.append(child.config(registry, sets))
            check_data_files(child, configs[-1])
        except RegfwError as exc:
            raise RegfwError(f"sweep point {child.tags.get(T.SWEEP_POINT, child.run_name)}: {exc}") from None
    experiments = {c.experiment for c in configs}
    if len(experiments) != 1:
        raise RegfwError(f"sweep {parent.run_id}'s points are of several experiments ({', '.join(sorted(experiments))})")
    axes = _axes(registry, parent, configs)
    points = []
    for position, (child, config) in enumerate(zip(children, configs)):
        text = child.tags.get(T.SWEEP_INDEX, "")
        index = int(text) if text.isdigit() else position
        points.append(Point(position, _point_values(axes, child, index), config, child.run_name))
    return RecordedSweep(parent, children, Grid(experiments.pop(), axes, points))
