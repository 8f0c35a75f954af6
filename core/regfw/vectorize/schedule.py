"""A planned vectorized sweep in this process: buckets and lone points, in grid order."""

from __future__ import annotations

from regfw.training.points import run_in_order
from regfw.vectorize.bucket_run import BucketTask, run_bucket


def run_planned(plan, tasks: list, record, reporter=None, on_fallback=None, jobs: int = 1,
                watches: dict | None = None, refill=None, rows: int = 0, ray=None) -> BaseException | None:
    """Run ``plan`` (a :class:`regfw.vectorize.Plan` over ``tasks``' positions), calling
    ``record(result)`` per point; return the interrupt that stopped the sweep, if any. With
    ``jobs`` > 1, buckets and lone points are tasks for that many worker processes; with ``ray`` (a
    :class:`regfw.training.ray_cluster.RayOptions`), Ray tasks. ``watches``
    (a search's, by point index; workers ask this process at their report points) and ``refill``,
    ``rows`` (a search's that refills its stacks as their rows end, up to ``rows`` rows, in this
    process only): see :class:`BucketTask`."""
    if (jobs > 1 or ray is not None) and refill is not None:
        raise ValueError("a stack is refilled in this process only")
    work = [(bucket[0], BucketTask(number, [tasks[i] for i in bucket], watches, refill, rows))
            for number, bucket in enumerate(plan.buckets, start=1)]
    work += [(position, tasks[position]) for position, _ in plan.alone]
    work.sort(key=lambda pair: pair[0])
    if ray is not None:
        from regfw.training.ray_backend import run_ray

        return run_ray([item for _, item in work], record, ray, watches)
    if jobs > 1:
        from regfw.training.pool import run_parallel

        return run_parallel([item for _, item in work], jobs, record, watches)
    for _, item in work:
        if isinstance(item, BucketTask):
            stopped = run_bucket(item, record, on_fallback)
            if stopped is not None:
                return stopped
            continue
        stopped = run_in_order([item], record, reporter, watches)
        if stopped is not None:
            return stopped
    return None
