"""A bucket of sweep points run as one stacked program, each point still its own MLflow child run.

Every point is built exactly as its single run (:func:`regfw.build.build_state`), gets its child
run with the same params and tags as a sequential point plus :data:`regfw.store.tags.BUCKET`,
trains stacked (:mod:`regfw.vectorize.train`), and ends through :func:`regfw.runner.finish`
with its own nn.Module holding its trained values: summary, learned parameters, optimum and
excess loss, artifacts and status are written by the same code as for a single run.

Faults per point: a point whose loss turns NaN ends FAILED (``diverged at epoch ...``) while the
others train on; Ctrl-C or SIGTERM ends every child KILLED with its metrics so far. When the
built points turn out not to stack (shapes differ), every point runs the normal way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from regfw.errors import one_line
from regfw.interrupts import Interrupted, held
from regfw.training.points import PointResult, PointTask, run_in_order
from regfw.vectorize.children import build_points, start_runs


def run_in_worker(bucket: "BucketTask") -> list:
    """A bucket in a ``--jobs`` worker process (:mod:`regfw.training.pool`): its points' results, as
    a list. SIGTERM there ends every child KILLED, like a point of the ordinary parallel sweep."""
    from regfw.training.points import NOT_RUN, WorkerState

    if WorkerState.stopped:
        return [PointResult(task.index, NOT_RUN) for task in bucket.tasks]
    results: list = []
    WorkerState.running = True
    try:
        run_bucket(bucket, results.append)
    except (KeyboardInterrupt, Interrupted):  # stopped before any child run existed
        pass
    finally:
        WorkerState.running = False
    return results


@dataclass
class BucketTask:
    number: int  # 1, 2, ... within the sweep
    tasks: list  # the points' PointTasks
    # A search's watches, by point index: ``watch(epoch, history, recorder)`` after every epoch,
    # raising runner.Pruned to stop that point (it then leaves the stack: see vectorize.members).
    watches: dict | None = None
    # A search's, in this process only: ``refill(n)`` -> up to n (PointTask, watch or None) that
    # join the stack as its rows end (finished, pruned, diverged), up to ``rows`` rows at once.
    refill: object = None
    rows: int = 0
    run_in_worker = staticmethod(run_in_worker)  # what a --jobs worker calls for this task

    @property
    def index(self) -> int:
        return self.tasks[0].index


@dataclass
class Timing:
    """Where a bucket's time went (seconds): the bench reads tracking's share from it."""

    build: float = 0.0
    start_runs: float = 0.0
    train: float = 0.0
    finish: float = 0.0
    row_epochs: int = 0  # epochs trained summed over the stack's rows (a pruned row stops counting)


LAST_TIMING = Timing()


def _stack(states, registry):
    """(stack, step) or (None, reason)."""
    from regfw.vectorize.optimizers import stacked, unsupported
    from regfw.vectorize.stack import shape_reason, stack_states

    reason = shape_reason(states)
    entry = registry.get("optimizer", states[0].config.optimizer.name)
    factory = entry.extras.get("vectorized")
    if reason is None and not callable(factory):
        reason = unsupported(states[0].optimizer)
    if reason:
        return None, reason
    stack = stack_states(states)
    aliases = [leaf.detach() for leaf in stack.leaves]  # same storage, updated outside autograd
    try:
        return stack, stacked([s.optimizer for s in states], aliases, factory if callable(factory) else None)
    except Exception as exc:  # noqa: BLE001 - a plugin's factory: fall back, naming it
        return None, f"optimizer '{entry.name}' from plugin '{entry.plugin}' cannot stack: {one_line(exc)}"


def run_bucket(bucket: BucketTask, record, on_fallback=None) -> BaseException | None:
    """Run the bucket, calling ``record(result)`` per point; return the interrupt that stopped it."""
    from regfw.plugins import get_plugins
    from regfw.recorder import History, Recorder
    from regfw.runner import Outcome, artifacts_writer, finish
    from regfw.vectorize.members import Joining, Members
    from regfw.vectorize.record import StackRecorder
    from regfw.vectorize.train import train_stack

    timing = Timing()
    globals()["LAST_TIMING"] = timing
    clock = time.monotonic()
    plugins = get_plugins()
    registry = plugins.registry
    from regfw.device import use_threads

    use_threads(bucket.tasks[0].config.train.get("threads"))  # --threads is one value for the whole sweep
    tasks, states = build_points(bucket.tasks, registry, record)
    stack, step = _stack(states, registry) if len(states) > 1 else (None, "the other points could not be built")
    if stack is None:
        if on_fallback is not None:
            on_fallback([t.index for t in tasks], step)
        return run_in_order(tasks, record, watches=bucket.watches)
    timing.build, clock = time.monotonic() - clock, time.monotonic()
    writer = artifacts_writer(registry.get("experiment", states[0].config.experiment))
    trackers = []
    try:
        trackers = start_runs(tasks, states, plugins, len(states), bucket.number)
    except (KeyboardInterrupt, Interrupted) as exc:
        for tracker in trackers:
            tracker.end_quietly("KILLED")
        return exc
    timing.start_runs, clock = time.monotonic() - clock, time.monotonic()
    outcomes = [Outcome("FAILED", tr.run_id, s.history, device=str(s.device)) for tr, s in zip(trackers, states)]
    recorder = StackRecorder([s.history for s in states], [tr.log_metrics for tr in trackers])
    started = [clock] * len(states)  # by position: when its row began to train

    def end(i: int) -> None:
        """Point ``i``'s run ends with its outcome, recorded; ``record`` hears it at once."""
        outcome, state, tracker = outcomes[i], states[i], trackers[i]
        outcome.seconds = outcome.seconds or time.monotonic() - started[i]
        try:
            finish(outcome, state, tracker, Recorder(state.history, tracker.log_metrics), writer)
        except Exception as exc:  # noqa: BLE001 - the store went away: this point fails, the rest are written
            tracker.end_quietly("FAILED")
            outcome.status, outcome.error = "FAILED", one_line(exc)
        record(PointResult(tasks[i].index, outcome.status, outcome.run_id, outcome.error, outcome.seconds,
                           dict(outcome.summary), outcome.exit_code, pruned_at=outcome.pruned_at))

    watches = {i: bucket.watches[t.index] for i, t in enumerate(tasks) if (bucket.watches or {}).get(t.index)}
    joining = None
    if bucket.refill is not None and callable(getattr(step, "grow", None)):
        joining = Joining(bucket, registry, plugins, record, tasks, states, trackers, outcomes, started, watches)
    members = Members(stack, step, recorder, watches, outcomes, end, joining) if watches or joining else None
    interrupted, error = None, None
    try:
        train_stack(stack, step, recorder, on_epoch_end=members)
    except (KeyboardInterrupt, Interrupted) as exc:
        interrupted = exc
    except Exception as exc:  # noqa: BLE001 - e.g. a plugin model failing mid-training
        error = f"training failed at epoch {max(s.history.epochs_done for s in states) + 1}: {one_line(exc)}"
    seconds = time.monotonic() - clock
    timing.train, clock = seconds, time.monotonic()
    timing.row_epochs = stack.row_epochs
    staying = [i for i in range(len(states)) if i not in recorder.left]  # the pruned ones are already ended
    if interrupted is not None:
        recorder.cut(stack.completed)
    late = None
    with held() as late_signals:  # every child must end recorded: Ctrl-C waits
        try:
            recorder.drain()
        except Exception:  # noqa: BLE001 - keep going: the statuses must still be written
            pass
        stack.copy_back([r for r, i in enumerate(stack.positions) if i not in recorder.left])
        for i in staying:
            outcome, state = outcomes[i], states[i]
            if i in recorder.dead:
                outcome.error, outcome.exit_code = str(recorder.dead[i]), 3
            elif interrupted is not None:
                outcome.status, outcome.exit_code = "KILLED", getattr(interrupted, "exit_code", 130)
                outcome.error = f"interrupted at epoch {state.history.epochs_done}"
            elif error is not None:
                outcome.error, outcome.exit_code = error, 1
            else:
                outcome.status = "FINISHED"
            outcome.seconds = time.monotonic() - started[i] if joining is not None else seconds
            end(i)
    late = late_signals.first
    timing.finish = time.monotonic() - clock
    if interrupted is not None:
        return interrupted
    return Interrupted(128 + late) if late is not None else None
