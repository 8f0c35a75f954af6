"""One sweep point: what a worker is handed, what it hands back, and running it.

Points run in the sweep's own process or in spawned workers (:mod:`regfw.training.pool`); either way
a point is a plain ``regfw run`` whose MLflow run is a child of the sweep's parent run.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from regfw.errors import RegfwError, one_line
from regfw.interrupts import Interrupted

NOT_RUN = "NOT_RUN"
PR_SET_PDEATHSIG = 1  # prctl option, from <sys/prctl.h>


@dataclass
class PointTask:
    """What a worker needs to run one point (picklable: it crosses into spawned processes)."""

    index: int
    config: object
    run_name: str
    uri: str | None  # None: --no-track, nothing recorded
    experiment_name: str
    tags: dict


@dataclass
class PointResult:
    index: int
    status: str
    run_id: str | None = None
    error: str | None = None
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)
    exit_code: int = 0
    stop_signal: int | None = None  # a Ctrl-C/SIGTERM arrived while the point was being written: stop after it
    pruned_at: int | None = None  # a search's pruner stopped the point after this epoch


class WorkerState:
    """A spawned worker's reaction to SIGTERM: end the running point like `run` does (flushed,
    KILLED) and start no point queued after it. Ctrl-C is the parent's to handle."""

    running = False
    stopped = False

    @classmethod
    def install(cls) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, cls.on_sigterm)
        die_with_parent()

    @classmethod
    def on_sigterm(cls, signum, frame):
        cls.stopped = True
        if cls.running:
            raise Interrupted(128 + signum)


def die_with_parent() -> None:
    """Ask Linux to send this worker SIGTERM when the sweep's process dies, however it dies (a
    SIGKILL gives the parent no chance to stop its workers): the running point then ends KILLED
    instead of training on, orphaned, for hours. Elsewhere a no-op."""
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def run_point(task: PointTask, reporter=None, watch=None) -> PointResult:
    """Run one point with ``runner.execute`` as a child of the sweep's parent run (``watch``:
    see ``runner.execute``; a search's pruning)."""
    from regfw import start_times

    with start_times.point(task.index):  # --jobs: its run after those of the points before it
        return _run_point(task, reporter, watch)


def _run_point(task: PointTask, reporter, watch) -> PointResult:
    from regfw.plugins import get_plugins
    from regfw.runner import execute

    if WorkerState.stopped:
        return PointResult(task.index, NOT_RUN)
    tracker = point_tracker(task)
    WorkerState.running = True
    try:
        outcome = execute(task.config, get_plugins(), tracker, run_name=task.run_name, reporter=reporter, watch=watch)
    except (KeyboardInterrupt, Interrupted) as exc:  # stopped while the run was being set up
        tracker.end_quietly("KILLED")
        return PointResult(task.index, "KILLED", tracker.run_id, "interrupted",
                           exit_code=getattr(exc, "exit_code", 130))
    except Exception as exc:  # noqa: BLE001 - bad input or the store went away; one point must not end the sweep
        text = str(exc) if isinstance(exc, RegfwError) else one_line(exc)
        if tracker.run_id is None:  # failed while being built: no run exists yet to hold the reason
            return build_failure(task, text)
        if not tracker.recording:
            return PointResult(task.index, "FAILED", None, text, exit_code=1)
        tracker.end_quietly("FAILED", text)
        return PointResult(task.index, "FAILED", tracker.run_id, text, exit_code=1)
    finally:
        WorkerState.running = False
    return PointResult(task.index, outcome.status, outcome.run_id, outcome.error, outcome.seconds,
                       dict(outcome.summary), outcome.exit_code, outcome.late_signal, outcome.pruned_at)


def point_tracker(task: PointTask, tags: dict | None = None):
    """The point's tracker: its child run in the sweep's store, or nothing (``--no-track``)."""
    from regfw.store import MlflowTracker, NullTracker

    if task.uri is None:
        return NullTracker()
    return MlflowTracker(task.uri, task.experiment_name, extra_tags=task.tags | (tags or {}))


def build_failure(task: PointTask, reason: str) -> PointResult:
    """A point that failed while being built (a factory raised for its values, say): recorded as
    a FAILED child run with its params and the reason in ``regfw.failure``, as a point that fails
    while training is, so ``regfw runs`` and the UI say why. A plain ``regfw run`` creates no run
    for such bad input; a sweep's point is one run among many, and its parent already exists."""
    from regfw.store import tags as T

    tracker = point_tracker(task)
    if not tracker.recording:  # --no-track: the terminal is the only record
        return PointResult(task.index, "FAILED", None, reason, exit_code=1)
    try:
        tracker.open()
        tracker.start(task.run_name, task.config.flat_params(), {T.EXPERIMENT: task.config.experiment,
                                                                 T.SEED: task.config.seed})
    except Exception:  # noqa: BLE001 - the store is what failed: the reason still reaches the terminal
        return PointResult(task.index, "FAILED", None, reason, exit_code=1)
    tracker.end_quietly("FAILED", reason)
    return PointResult(task.index, "FAILED", tracker.run_id, reason, exit_code=1)


def each_result(record):
    """``record`` for what a worker hands back: one PointResult, or a bucket's list of them."""
    def each(result) -> None:
        for one in result if isinstance(result, list) else [result]:
            record(one)

    return each


def stop_after(result: PointResult) -> Interrupted | None:
    """The interrupt that ends a sweep after this point: it was killed, or a signal arrived while
    it was being written (and so could not stop it); None to go on."""
    if result.status == "KILLED":
        return Interrupted(result.exit_code or 130)
    if result.stop_signal is not None:
        return Interrupted(128 + result.stop_signal)
    return None


def run_in_order(tasks: list[PointTask], record, reporter=None, watches: dict | None = None) -> Interrupted | None:
    """Points one after another in this process, ``record(result)`` for each; the interrupt that
    stopped them (see :func:`stop_after`), or None. ``watches``: a search's, by point index."""
    for task in tasks:
        result = run_point(task, reporter, watch=(watches or {}).get(task.index))
        record(result)
        stopped = stop_after(result)
        if stopped is not None:
            return stopped
    return None
