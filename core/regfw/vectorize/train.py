"""The stacked training loop: :func:`regfw.engine.train` for N points at once.

Per step: one vmapped forward of every model on its own batch, the N losses summed, ONE
``torch.autograd.grad`` on the stacked parameters (each model gets exactly its own gradient:
they share nothing), one stacked optimizer update. Mini-batches come from each point's own
shuffle generator, drawn as its single run draws them; metrics are the single run's, per point,
at the same log points.

Rows normally train in step: step t is every row's epoch t. A search may refill the stack with new
trials as others leave it (:meth:`regfw.vectorize.stack.Stack.join`); such a row's epoch is
``t - offset``, and each row logs at its own log points (the values of the others are not recorded
at that step) and ends at its own last epoch.
"""

from __future__ import annotations

from regfw.metrics import correct
from regfw.recorder import default_log_every


def _per_point_correct(out, target, task: str):
    from torch.func import vmap

    return vmap(lambda o, t: correct(o, t, task))(out, target)


def shuffled_batch(stack, perms, start: int, stop: int):
    """Rows ``start:stop`` of every point's own order: (N, b, ...). Gathered a batch at a time,
    not the whole epoch: the copy is used while it is still in cache, and a bucket holds no
    second copy of its points' data (mlp-regression stacked 32 times: 448 MB an epoch)."""
    import torch

    picked = perms[:, start:stop]
    if len(perms) == 1 < stack.size:  # every row's order is the same: one batch for all (N-less)
        return stack.x[picked[0]], stack.y[picked[0]]
    if stack.shared_data:
        return stack.x[picked], stack.y[picked]
    rows = torch.arange(stack.size, device=stack.x.device).unsqueeze(1)
    return stack.x[rows, picked], stack.y[rows, picked]


def train_stack(stack, step, recorder, *, on_epoch_end=None) -> int:
    """Train the stacked points up to ``train.epochs`` each; return the last step completed. Stops
    early when every point has diverged. However it ends (an interrupt too), each living point's
    ``history.epochs_done`` is the last epoch it completed. ``on_epoch_end(t)`` after every step
    may prune rows, end the ones at their last epoch and let new ones join (a search's)."""
    stack.completed = 0
    try:
        return _train(stack, step, recorder, on_epoch_end)
    finally:
        for position, state, offset in zip(stack.positions, stack.states, stack.offsets):
            if position not in recorder.dead:  # once, not per epoch: O(N) per step adds up
                state.history.epochs_done = max(0, stack.completed - offset)


def _train(stack, step, recorder, on_epoch_end) -> int:
    import torch

    settings = stack.states[0].config.train
    data = stack.states[0].data
    epochs = settings["epochs"]
    log_every = settings["log_every"] or default_log_every(epochs)
    accuracy = "accuracy" in settings["metrics"]
    x, y = stack.x, stack.y
    n = len(data.x_train)
    batch = n if settings["batch_size"] == "full" else min(settings["batch_size"], n)
    full_batch = batch >= n
    leaves, grad = stack.leaves, torch.autograd.grad
    generators = [s.generator for s in stack.states]
    done = t = 0
    while stack.size:
        t += 1
        if any(stack.offsets):  # rows at their own epochs: each logs at its own points
            at = [t - offset for offset in stack.offsets]
            when = [e if e % log_every == 0 or e == epochs or e == 1 else None for e in at]
            log_now = any(e is not None for e in when)
        else:
            when, log_now = None, t % log_every == 0 or t == epochs or t == 1
        if full_batch:
            out, losses = stack.forward(x, y)
            step(grad(losses.sum(), leaves))
            if log_now:
                recorder.record(t, "train_loss", losses, when)
                if accuracy:
                    recorder.record(t, "train_accuracy", _per_point_correct(out.detach(), y if not stack.shared_data
                                    else y.expand(stack.size, *y.shape), data.task) / n, when)
        else:
            shared, perms = stack.shared_data, None
            if settings["shuffle"]:
                perms = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(x.device)
                if shared and bool((perms == perms[0]).all()):
                    # One data tensor, one order (the points of one seed: a search over optimizer values):
                    # gather each batch once for every row, as unshuffled shared data is taken.
                    perms = perms[:1]
                else:
                    shared = False
            total = torch.zeros(stack.size, device=x.device) if log_now else None
            hits = torch.zeros(stack.size, device=x.device) if log_now and accuracy else None
            for i in range(0, n, batch):
                if perms is not None:
                    xb, yb = shuffled_batch(stack, perms, i, i + batch)
                else:
                    xb, yb = (x[i:i + batch], y[i:i + batch]) if shared else (x[:, i:i + batch], y[:, i:i + batch])
                out, losses = stack.forward(xb, yb, shared=shared)
                step(grad(losses.sum(), leaves))
                if log_now:
                    rows = xb.shape[0] if shared else xb.shape[1]
                    total += losses.detach() * rows
                    if accuracy:
                        target = yb.expand(stack.size, *yb.shape) if shared else yb
                        hits += _per_point_correct(out.detach(), target, data.task)
            if log_now:
                recorder.record(t, "train_loss", total / n, when)
                if accuracy:
                    recorder.record(t, "train_accuracy", hits / n, when)
        if log_now and data.has_test:
            evaluate(stack, accuracy, t, recorder, when)
        done = stack.completed = t
        stack.row_epochs += stack.size
        if on_epoch_end is not None:
            on_epoch_end(t)
            if leaves is not stack.leaves:  # rows left the stack or joined it (a search's)
                x, y, leaves = stack.x, stack.y, stack.leaves
                generators = [s.generator for s in stack.states]
        recorder.maybe_drain()
        if not recorder.alive or all(t - offset >= epochs for offset in stack.offsets):
            break
    recorder.drain()
    return done


def evaluate(stack, accuracy: bool, t: int, recorder, when=None) -> None:
    out, losses = stack.forward(stack.x_test, stack.y_test, train=False)
    recorder.record(t, "test_loss", losses, when)
    if accuracy:
        target = stack.y_test.expand(stack.size, *stack.y_test.shape) if stack.shared_data else stack.y_test
        recorder.record(t, "test_accuracy",
                        _per_point_correct(out, target, stack.states[0].data.task) / len(stack.states[0].data.x_test),
                        when)
