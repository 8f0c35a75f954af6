"""``--jobs N``: sweep points in N spawned worker processes, stopped cleanly on Ctrl-C/SIGTERM."""

from __future__ import annotations

import os
import signal
import time

from regfw.interrupts import Interrupted
from regfw.training.points import PointResult, PointTask, WorkerState, run_point

STOP_SECONDS = 120  # after Ctrl-C/SIGTERM, how long running points get to flush and end as KILLED


def run_parallel(tasks: list[PointTask], jobs: int, record) -> BaseException | None:
    """Run ``tasks`` in ``jobs`` processes, calling ``record(result)`` as each ends; return the
    interrupt that stopped them, if any."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    # Plain points create their runs in point order (regfw.start_times); a stacked bucket's
    # points wait for no one: buckets interleave indices and may be queued behind each other.
    slots = None if any(hasattr(t, "run_in_worker") for t in tasks) else \
        context.Array("q", max(t.index for t in tasks) + 1, lock=False)
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context,
                               initializer=_install, initargs=(slots,))
    # A task may bring its own worker function (a vectorized bucket: one result per point, as a list).
    futures = {pool.submit(getattr(task, "run_in_worker", None) or run_point, task): task for task in tasks}
    record = _each(record)
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                task = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    result = PointResult(task.index, "FAILED", error=f"worker process died: {exc}", exit_code=1)
                except Exception as exc:  # noqa: BLE001
                    result = PointResult(task.index, "FAILED", error=f"{type(exc).__name__}: {exc}", exit_code=1)
                record(result)
        pool.shutdown(wait=True)
        return None
    except (KeyboardInterrupt, Interrupted) as exc:
        _stop(pool, pending, record)
        return exc


def _install(slots) -> None:
    from regfw import start_times

    WorkerState.install()
    start_times.share(slots)


def _each(record):
    def each(result) -> None:
        for one in result if isinstance(result, list) else [result]:
            record(one)

    return each


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
