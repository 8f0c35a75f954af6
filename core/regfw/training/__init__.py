"""The execution layer: the ways points train, behind one call that ``sweep`` and ``tune`` share.

A grid and a search are two ways of choosing points (:class:`regfw.training.points.PointTask`); both
hand them to :func:`train_points` with the :class:`Ways` they are to train in, and hear each
point's :class:`regfw.training.points.PointResult` through ``record`` as soon as it ends. A grid hands
all its points at once; a search hands the points its study asked for (a wave), tells the study
each result as ``record`` hears it, and hands the next wave. A search's ``watches`` (by point index)
see every epoch of a point trained in this process (its report points, for pruning); a point trained
in a worker process or on Ray asks this process at its report points instead
(:mod:`regfw.training.reports`).

The ways: one after another here (:func:`regfw.training.points.run_in_order`), ``--jobs`` worker
processes (:mod:`regfw.training.pool`), Ray tasks (:mod:`regfw.training.ray_backend`), and stacked
buckets (:mod:`regfw.vectorize.schedule`, itself here, in ``--jobs`` workers or as Ray tasks). A fifth way is one
more module and one more branch here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Ways:
    jobs: int = 1  # worker processes (1: this process)
    ray: object = None  # a regfw.training.ray_cluster.RayOptions: every point a Ray task
    plan: object = None  # a regfw.vectorize.Plan over the tasks' positions: stacked buckets
    reporter: object = None  # a point's progress, for points trained here
    on_fallback: object = None  # (indices, reason): a bucket whose built points did not stack
    watches: dict | None = None  # a search's, by point index (see regfw.training.reports for workers)
    # A search's: refill(n) -> up to n more (PointTask, watch or None), asked as points end. With plan
    # (in this process only): they join a stack as its rows end, up to `rows` rows at once
    # (regfw.vectorize.bucket_run); with --jobs or Ray, they keep `jobs` points out.
    refill: object = None
    rows: int = 0

    def where(self) -> str:
        """Why ``refill`` cannot be honoured (the points train elsewhere), or ''."""
        if self.ray is not None:
            return "Ray tasks"
        if self.jobs > 1:
            return "worker processes"
        return ""


def train_points(tasks: list, record, ways: Ways | None = None) -> BaseException | None:
    """Train ``tasks`` the ``ways`` say, ``record(result)`` as each ends; the interrupt that
    stopped them (Ctrl-C, SIGTERM), or None."""
    ways = ways or Ways()
    if ways.plan is not None:
        if ways.refill and ways.where():
            raise ValueError(f"a stack is refilled in this process, not by {ways.where()}")
        from regfw.vectorize.schedule import run_planned

        return run_planned(ways.plan, tasks, record, ways.reporter, ways.on_fallback, jobs=ways.jobs,
                           watches=ways.watches, refill=ways.refill, rows=ways.rows, ray=ways.ray)
    if ways.ray is not None:
        from regfw.training.ray_backend import run_ray

        return run_ray(tasks, record, ways.ray, ways.watches, ways.refill, ways.jobs)
    if ways.jobs > 1:
        from regfw.training.pool import run_parallel

        return run_parallel(tasks, ways.jobs, record, ways.watches, ways.refill)
    from regfw.training.points import run_in_order

    return run_in_order(tasks, record, ways.reporter, ways.watches)
