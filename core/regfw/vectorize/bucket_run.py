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

from regfw.errors import RegfwError, one_line
from regfw.interrupts import Interrupted, held
from regfw.store import tags as T
from regfw.training.points import PointResult, PointTask, build_failure, point_tracker, run_in_order


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
    # raising runner.Pruned to stop that point (it then leaves the stack: see _Members).
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


def bucket_tag(number: int, size: int) -> str:
    return f"bucket {number}, {size} points"


def _build(tasks, registry, record) -> tuple[list, list]:
    """Each point's RunState; a point that cannot be built fails alone, before its run exists."""
    from regfw.build import build_state
    from regfw.device import resolve_device

    built = []
    for task in tasks:
        try:
            built.append((task, build_state(task.config, registry, resolve_device(task.config.device))))
        except RegfwError as exc:
            record(build_failure(task, str(exc)))
    return [t for t, _ in built], [s for _, s in built]


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


def _start_runs(tasks, states, plugins, size: int, number: int, share=None, joined_at: int = 0, base=None) -> list:
    from regfw.provenance import run_tags

    base = base or run_tags(states[0].config, plugins, states[0].device)  # one git call for the bucket
    trackers = []
    for task, state in zip(tasks, states):
        joined = {T.JOINED_AT: joined_at} if joined_at else {}  # a search's refill: the stack's step it joined at
        tracker = point_tracker(task, {T.BUCKET: bucket_tag(number, size)} | joined)
        if share is not None and share.recording and tracker.recording:
            tracker.share_from(share)
        elif trackers and tracker.recording:  # one connection for the bucket
            tracker.share_from(trackers[0])
        else:
            tracker.open()
        trackers.append(tracker)
        tags = base | {T.SEED: state.config.seed} | state.data.tags
        with held() as signals:  # a signal while the run is created: it exists first, then ends KILLED
            tracker.start(task.run_name, state.config.flat_params(), tags)
            if state.data.source:
                tracker.log_input(state.data.source)
        signals.deliver()
    return trackers


def run_bucket(bucket: BucketTask, record, on_fallback=None) -> BaseException | None:
    """Run the bucket, calling ``record(result)`` per point; return the interrupt that stopped it."""
    from regfw.plugins import get_plugins
    from regfw.recorder import History, Recorder
    from regfw.runner import Outcome, artifacts_writer, finish
    from regfw.vectorize.record import StackRecorder
    from regfw.vectorize.train import train_stack

    timing = Timing()
    globals()["LAST_TIMING"] = timing
    clock = time.monotonic()
    plugins = get_plugins()
    registry = plugins.registry
    from regfw.device import use_threads

    use_threads(bucket.tasks[0].config.train.get("threads"))  # --threads is one value for the whole sweep
    tasks, states = _build(bucket.tasks, registry, record)
    stack, step = _stack(states, registry) if len(states) > 1 else (None, "the other points could not be built")
    if stack is None:
        if on_fallback is not None:
            on_fallback([t.index for t in tasks], step)
        return run_in_order(tasks, record, watches=bucket.watches)
    timing.build, clock = time.monotonic() - clock, time.monotonic()
    writer = artifacts_writer(registry.get("experiment", states[0].config.experiment))
    trackers = []
    try:
        trackers = _start_runs(tasks, states, plugins, len(states), bucket.number)
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
        joining = _Joining(bucket, registry, plugins, record, tasks, states, trackers, outcomes, started, watches)
    members = _Members(stack, step, recorder, watches, outcomes, end, joining) if watches or joining else None
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


class _Members:
    """The stack's ``on_epoch_end`` in a search. Every living point's watch sees its own history
    (reporting its value to its trial as it comes); a point its pruner stops ends FINISHED with its
    curve so far, is recorded at once, and leaves the stack (:meth:`regfw.vectorize.stack.Stack.keep`
    and the step's ``keep``), so its row costs nothing from the next step. A plugin optimizer whose
    step cannot drop rows keeps the row training, its values no longer recorded.

    With ``joining`` (a search that refills its stack), a point also leaves when it reaches its last
    epoch (FINISHED) or diverged (FAILED), and new trials take the rows that were freed."""

    def __init__(self, stack, step, recorder, watches: dict, outcomes: list, end, joining=None):
        self.stack, self.step, self.recorder = stack, step, recorder
        self.watches, self.outcomes, self.end, self.joining = watches, outcomes, end, joining
        self.epochs = stack.states[0].config.train["epochs"]

    def __call__(self, t: int) -> None:
        from regfw.runner import Pruned

        stack, recorder = self.stack, self.recorder
        pruned, ending = {}, {}
        for row, position in enumerate(list(stack.positions)):
            if position in recorder.left or position in recorder.dead:
                continue
            epoch = t - stack.offsets[row]
            watch = self.watches.get(position)
            if watch is not None:
                try:
                    watch(epoch, stack.states[row].history, recorder)
                except Pruned as exc:
                    pruned[position] = exc.epoch
                    continue
            if self.joining is not None and epoch >= self.epochs:
                ending[position] = epoch
        if self.joining is not None:
            ending |= {p: t - stack.offsets[r] for r, p in enumerate(stack.positions)
                       if p in recorder.dead and p not in recorder.left}
        if not pruned and not ending:
            return
        recorder.drain()  # the rows recorded so far are read with the stack's current rows
        leaving = pruned | ending
        stack.copy_back([r for r, p in enumerate(stack.positions) if p in leaving])
        for position, at in pruned.items():
            stack.states[stack.positions.index(position)].history.epochs_done = at
        for position, at in ending.items():
            if position not in recorder.dead:  # a diverged point's last epoch is its bad one (set by drain)
                stack.states[stack.positions.index(position)].history.epochs_done = at
        keep = [r for r, p in enumerate(stack.positions) if p not in leaving]
        if (keep or self.joining is not None) and callable(getattr(self.step, "keep", None)):
            stack.keep(keep)
            self.step.keep(keep, [leaf.detach() for leaf in stack.leaves])
        recorder.leave(leaving, stack.positions)
        with held() as signals:  # a trial's run is ended recorded before a signal stops the stack
            for position in leaving:
                outcome = self.outcomes[position]
                if position in recorder.dead:
                    outcome.error, outcome.exit_code = str(recorder.dead[position]), 3
                else:
                    outcome.status = "FINISHED"
                    outcome.pruned_at = pruned.get(position)
                self.end(position)
        signals.deliver()
        if self.joining is not None:
            self.joining(stack, self.step, recorder, t)


class _Joining:
    """New trials into a search's stack as its rows end: asked through ``bucket.refill`` for the
    free rows, built as their single runs build them, their child runs started, then appended to
    the stack, its update and its recorder (:meth:`regfw.vectorize.stack.Stack.join`). A trial
    that turns out not to fit the stack (another group, another shape) trains alone at once."""

    def __init__(self, bucket, registry, plugins, record, tasks, states, trackers, outcomes, started, watches):
        from regfw.vectorize.buckets import group_key

        self.bucket, self.registry, self.plugins, self.record = bucket, registry, plugins, record
        self.tasks, self.states, self.trackers, self.outcomes = tasks, states, trackers, outcomes
        self.started, self.watches = started, watches
        self.key, self.rows = group_key(states[0].config), bucket.rows or len(states)
        self.base_tags = None  # the bucket's provenance, read once (a git call) for every trial that joins

    def fits(self, stack, step, state, reference) -> str | None:
        from regfw.vectorize.buckets import group_key
        from regfw.vectorize.optimizers import unsupported
        from regfw.vectorize.stack import shape_reason

        if group_key(state.config) != self.key:
            return "it does not share the stack's model, loss, dataset, optimizer and training settings"
        reason = shape_reason([reference, state]) or unsupported(state.optimizer)
        if reason is None and type(state.optimizer) is not type(reference.optimizer):
            reason = "another optimizer"
        return reason or step.can_grow([s.optimizer for s in stack.states] + [state.optimizer])

    def __call__(self, stack, step, recorder, t: int) -> None:
        from regfw.runner import Outcome

        free = self.rows - stack.size
        if free <= 0 or not callable(getattr(step, "grow", None)):
            return
        asked = self.bucket.refill(free)
        if not asked:
            return
        built_tasks, built_states = _build([task for task, _ in asked], self.registry, self.record)
        watch_of = {task.index: watch for task, watch in asked}
        reference = self.states[0]
        joining = []
        for task, state in zip(built_tasks, built_states):
            reason = self.fits(stack, step, state, reference)
            if reason is None:
                joining.append((task, state))
            else:  # rare: the search asked for what the stack cannot take
                run_in_order([task], self.record, watches={task.index: watch_of.get(task.index)})
        if not joining:
            return
        with held() as signals:  # the new runs exist and are part of the stack before a signal stops it
            tasks, states = [task for task, _ in joining], [state for _, state in joining]
            if self.base_tags is None:
                from regfw.provenance import run_tags

                self.base_tags = run_tags(states[0].config, self.plugins, states[0].device)
            trackers = _start_runs(tasks, states, self.plugins, self.rows, self.bucket.number,
                                   share=self.trackers[0] if self.trackers else None, joined_at=t, base=self.base_tags)
            positions = list(range(len(self.states), len(self.states) + len(states)))
            now = time.monotonic()
            for task, state, tracker, position in zip(tasks, states, trackers, positions):
                self.tasks.append(task)
                self.states.append(state)
                self.trackers.append(tracker)
                self.outcomes.append(Outcome("FAILED", tracker.run_id, state.history, device=str(state.device)))
                self.started.append(now)
                if watch_of.get(task.index) is not None:
                    self.watches[position] = watch_of[task.index]
            stack.join(states, positions, t)
            step.grow([s.optimizer for s in stack.states], [leaf.detach() for leaf in stack.leaves], len(states))
            recorder.join([s.history for s in states], [tr.log_metrics for tr in trackers], stack.positions)
        signals.deliver()
