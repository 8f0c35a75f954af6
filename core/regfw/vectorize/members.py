"""Who trains in a running stack: rows that leave it and rows that join it (a search's).

:class:`Members` is the stack's ``on_epoch_end`` in a search (:func:`regfw.vectorize.bucket_run.run_bucket`):
a point its pruner stops, and with a refill a point at its last epoch or diverged, ends at once and
leaves the stack; :class:`Joining` then asks for new trials to take the freed rows, which train from
their own epoch 1 beside the others (:meth:`regfw.vectorize.stack.Stack.join`).
"""

from __future__ import annotations

import time

from regfw.interrupts import held
from regfw.training.points import run_in_order
from regfw.vectorize.children import build_points, start_runs


class Members:
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


class Joining:
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
        built_tasks, built_states = build_points([task for task, _ in asked], self.registry, self.record)
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
            trackers = start_runs(tasks, states, self.plugins, self.rows, self.bucket.number,
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
