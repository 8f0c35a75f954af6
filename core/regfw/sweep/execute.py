"""Running a sweep: the parent run, every point (here or in worker processes), the parent's end.

The store, the MLflow experiment and the parent run exist before the first point starts. A failed
point is FAILED and the sweep goes on; Ctrl-C or SIGTERM stops it within a point (the running
point ends KILLED with its metrics, unstarted points never start, the parent ends KILLED).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from regfw.interrupts import Interrupted, sigterm_as_interrupt
from regfw.store import tags as T
from regfw.sweep.grid import AXIS_SEP, Grid, Point
from regfw.training.points import NOT_RUN, PointResult, PointTask

MAX_EXIT = 100  # the sweep's exit code is the number of failed points, at most this


@dataclass
class SweepResult:
    sweep_id: str
    parent_run_id: str
    status: str
    results: list[PointResult]
    not_run: int = 0
    exit_code: int = 0
    experiment_id: str | None = None  # the MLflow experiment of the parent (None: nothing recorded)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.status == "FAILED")


def common_params(points: list[Point]) -> dict:
    """The params every point shares (the parent run's params)."""
    flats = [p.config.flat_params() for p in points]
    first = flats[0]
    return {k: v for k, v in first.items() if all(f.get(k) == v for f in flats[1:])}


def sweep_name(grid: Grid) -> str:
    axes = " ".join(axis.shown() for axis in grid.axes)
    return f"{grid.experiment} sweep" + (f" {axes}" if axes else "")


def run_sweep(grid: Grid, uri: str | None, experiment_name: str, *, jobs: int = 1, reporter=None,
              on_result=None, vectorize: bool = False, max_bucket: int | None = None,
              on_plan=None, on_fallback=None, ray=None, tags: dict | None = None) -> SweepResult:
    """Create the parent run, run every point (one after another, or in ``jobs`` processes),
    close the parent (``uri`` None: ``--no-track``, nothing recorded). ``reporter`` shows a
    point's progress when points run here (``jobs=1``).

    ``vectorize``: compatible points train as stacked buckets (:mod:`regfw.vectorize`), planned
    before any run exists; ``on_plan(plan)`` sees the plan, ``on_fallback(indices, reason)`` a
    bucket whose built points turned out not to stack (they then run the normal way).

    ``ray``: a :class:`regfw.training.ray_cluster.RayOptions`: the points run as Ray tasks; Ray is
    reached and checked before any run exists.

    ``tags``: added to the parent and every point's run (``regfw.started_from``, ``regfw.rerun_of``)."""
    from regfw.device import resolve_device
    from regfw.store import MlflowTracker, NullTracker

    for device in sorted({p.config.device for p in grid.points} if ray is None else ()):  # Ray: the workers' devices
        resolve_device(device)  # a missing device is bad input: fail before any run exists
    plan = None
    if vectorize:
        from regfw.plugins import get_plugins
        from regfw.vectorize import plan_buckets

        plan = plan_buckets(grid.points, get_plugins().registry, max_bucket=max_bucket, jobs=jobs)
        if on_plan is not None:
            on_plan(plan)

    if ray is not None:
        from regfw.training.ray_cluster import connect

        connect(ray, uri, grid.points)
    sweep_id = uuid.uuid4().hex[:12]
    # uri None (--no-track): no parent and no children; the results reach the terminal only.
    parent = (MlflowTracker(uri, experiment_name) if uri is not None else NullTracker()).open()
    params = common_params(grid.points) | {f"sweep.{a.key}": (AXIS_SEP if a.list_typed else ",").join(a.values)
                                           for a in grid.axes}
    axes_text = ", ".join(a.key for a in grid.axes) or "nothing"
    extra_tags = dict(tags or {})
    parent_tags = {
        T.ROLE: T.ROLE_SWEEP,
        T.SWEEP_ID: sweep_id,
        T.EXPERIMENT: grid.experiment,
        T.SWEEP_POINTS: len(grid.points),
        T.SWEEP_AXES: json.dumps({a.key: a.values for a in grid.axes}),
        T.NOTE: f"regfw sweep {sweep_id}: {len(grid.points)} points over {axes_text}",
        T.RUN_COLOR: T.PARENT_COLOR,
    } | extra_tags
    parent_id = parent.start(sweep_name(grid), params, parent_tags)

    tasks = [PointTask(point.index, point.config, point.run_name, uri, experiment_name,
                       {T.PARENT: parent_id, T.SWEEP_ID: sweep_id, T.SWEEP_POINT: point.label() or "-",
                        T.SWEEP_INDEX: point.index, T.RUN_COLOR: T.point_color(point.index)} | extra_tags)
             for point in grid.points]
    results: list[PointResult] = []
    interrupted: BaseException | None = None

    def record(result: PointResult) -> None:
        if result.status == NOT_RUN:
            return
        results.append(result)
        if on_result is not None:
            on_result(result, grid.points[result.index])

    try:
        with sigterm_as_interrupt():
            from regfw.build import shared_data
            from regfw.training import Ways, train_points  # a grid hands every point at once

            with shared_data():  # points of one seed build their data once (in this process)
                interrupted = train_points(tasks, record, Ways(jobs, ray, plan, reporter, on_fallback))
    except (KeyboardInterrupt, Interrupted) as exc:
        interrupted = exc
    finally:
        results.sort(key=lambda r: r.index)
        failed = sum(1 for r in results if r.status == "FAILED")
        not_run = len(tasks) - len(results)
        status = "KILLED" if interrupted else ("FAILED" if failed else "FINISHED")
        end_tags = {T.SWEEP_FAILED: failed, T.SWEEP_FINISHED: sum(r.status == "FINISHED" for r in results)}
        if not_run:
            end_tags[T.SWEEP_NOT_RUN] = not_run
        if failed:
            end_tags[T.FAILURE] = f"{failed} of {len(tasks)} points failed"
        elif interrupted:
            end_tags[T.FAILURE] = "interrupted"
        try:
            parent.set_tags(end_tags)
        finally:
            parent.end(status)
    code = getattr(interrupted, "exit_code", 130) if interrupted is not None else min(failed, MAX_EXIT)
    return SweepResult(sweep_id, parent_id, status, results, not_run, code, getattr(parent, "experiment_id", None))
