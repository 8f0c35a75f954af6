"""``--jobs N``: sweep points in N spawned worker processes, stopped cleanly on Ctrl-C/SIGTERM."""

from __future__ import annotations

import os
import signal
import time

from regfw.interrupts import Interrupted
from regfw.training.points import PointResult, PointTask, WorkerState, each_result, run_point

STOP_SECONDS = 120  # after Ctrl-C/SIGTERM, how long running points get to flush and end as KILLED


def run_parallel(tasks: list[PointTask], jobs: int, record, watches: dict | None = None,
                 refill=None) -> BaseException | None:
    """Run ``tasks`` in ``jobs`` processes, calling ``record(result)`` as each ends; return the
    interrupt that stopped them, if any. A search's ``watches`` (by point index) are answered here
    as the workers reach their report points (:mod:`regfw.training.reports`); its ``refill(n)``
    hands up to n more (PointTask, watch or None) as points end, so ``jobs`` points stay out."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    slots = _start_order(context, tasks) if refill is None else None
    judges = None
    if watches or refill is not None:
        from regfw.training.reports import Judges, ProcessChannel

        capacity = max(len(tasks), jobs, len(watches or {}))  # a bucket holds several watched points
        judges = Judges(watches or {}, ProcessChannel(context, capacity), capacity)
    pool = ProcessPoolExecutor(max_workers=jobs if refill is not None else min(jobs, len(tasks)), mp_context=context,
                               initializer=_install, initargs=(slots, judges.channel.parts() if judges else None))
    futures = {_submit(pool, task, judges): task for task in tasks}
    record = each_result(record)
    pending = set(futures)
    broken = False
    try:
        while pending:
            if judges is not None:  # answer report points promptly; a point's end can wait a little
                judges.answer(timeout=0.05)
                done = {future for future in pending if future.done()}
                pending -= done
            else:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                task = futures.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    broken = True  # every worker is gone: hand out nothing more here
                    result = PointResult(task.index, "FAILED", error=f"worker process died: {exc}", exit_code=1)
                except Exception as exc:  # noqa: BLE001
                    result = PointResult(task.index, "FAILED", error=f"{type(exc).__name__}: {exc}", exit_code=1)
                if judges is not None:
                    judges.release(task.index)
                record(result)
            if done and refill is not None and not broken and len(pending) < jobs:
                for task, watch in refill(jobs - len(pending)):  # asked now that the ended ones are told
                    if watch is not None:
                        judges.add(task.index, watch)
                    future = _submit(pool, task, judges)
                    futures[future] = task
                    pending.add(future)
        pool.shutdown(wait=True)
        return None
    except (KeyboardInterrupt, Interrupted) as exc:
        _stop(pool, pending, record)
        return exc


def _start_order(context, tasks: list):
    """The shared slots by which plain points create their runs in point order (regfw.start_times),
    or None: a stacked bucket's points wait for no one (buckets interleave indices and may be
    queued behind each other), nor do a refilled search's trials (handed out as others end)."""
    if any(hasattr(t, "run_in_worker") for t in tasks):
        return None
    slots = context.Array("q", max(t.index for t in tasks) + 1, lock=False)
    handed = {t.index for t in tasks}
    for index in range(len(slots)):
        if index not in handed:  # a search's earlier waves: no run to wait for
            slots[index] = -1
    return slots


def _submit(pool, task, judges):
    """A task may bring its own worker function (a vectorized bucket: one result per point, as a
    list); a watched point goes with the watch that asks this process at its report points."""
    own = getattr(task, "run_in_worker", None)
    if own is not None:
        return pool.submit(own, judges.for_task(task) if judges is not None else task)
    return pool.submit(_run_point_here, task, judges.asking(task.index) if judges is not None else None)


def _run_point_here(task: PointTask, watch) -> PointResult:
    """In a worker: the point, its run tagged with where it ran (as a Ray task's is)."""
    import socket

    from regfw.store import tags as T

    task.tags = task.tags | {T.HOST: socket.gethostname(), T.PID: os.getpid()}
    return run_point(task, None, watch)


def _install(slots, channel) -> None:
    from regfw import start_times
    from regfw.training import reports

    WorkerState.install()
    start_times.share(slots)
    reports.install(channel)


def _stop(pool, pending, record) -> None:
    """Cancel what has not started; ask running points to end as KILLED (flushed), by pid; kill
    a worker that does not manage it in time."""
    # The executor keeps its workers in ``_processes``; there is no public way to reach their pids.
    processes = lambda: list((getattr(pool, "_processes", None) or {}).values())  # noqa: E731
    for future in pending:
        future.cancel()
    for process in processes():
        if process.is_alive():
            try:
                os.kill(process.pid, signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + STOP_SECONDS
    for future in list(pending):
        if future.cancelled():
            continue
        try:
            record(future.result(timeout=max(0.1, deadline - time.monotonic())))
        except Exception:  # noqa: BLE001 - the worker was stopped before it reported
            pass
    stuck = [p for p in processes() if p.is_alive()] if any(not f.done() for f in pending) else []
    for process in stuck:  # did not end its point in time: our own worker, by pid
        try:
            os.kill(process.pid, signal.SIGKILL)
        except OSError:
            pass
    pool.shutdown(wait=not stuck, cancel_futures=True)
