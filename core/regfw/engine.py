"""The training loop.

Hot-loop rules, learned the hard way on tiny problems where the loop *is* the cost:
- no host sync per step: losses are recorded as device tensors (:mod:`regfw.recorder`);
- metrics are computed only at log points (every ``log_every``-th epoch, the first and the last);
- mini-batches are slices of one shuffled copy per epoch, not a DataLoader.
"""

from __future__ import annotations

from regfw.errors import RegfwError
from regfw.metrics import correct
from regfw.recorder import Recorder, default_log_every


def choose_step(state, full_batch_inputs=None):
    """The one place that decides how a step is taken, returning ``step(xb, yb) -> (out, loss)``:

    - ``train.grad=formula``: the model computes its own gradient, no autograd graph is built;
    - plain SGD: the fast path's leaner update (and a CUDA graph for full batches on a GPU);
    - anything else: the eager ``zero_grad(); backward(); step()``.
    """
    import torch

    model, loss_fn, optimizer = state.model, state.loss_fn, state.optimizer
    if state.config.train["grad"] == "formula":
        if not callable(getattr(model, "formula_grad", None)):
            raise RegfwError(f"train.grad=formula needs a model with formula_grad(x, y); {type(model).__name__} has none")

        def formula_step(xb, yb):
            with torch.no_grad():
                out = model(xb)
                loss = loss_fn(out, yb)
                model.formula_grad(xb, yb)
            optimizer.step()
            return out, loss

        return formula_step

    from regfw.fastpath import sgd_step

    fast = sgd_step(model, loss_fn, optimizer, full_batch_inputs=full_batch_inputs)
    if fast is not None:
        return fast

    def eager_step(xb, yb):
        out = model(xb)
        loss = loss_fn(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return out, loss

    return eager_step


def train(state, recorder: Recorder, *, start_epoch: int = 1, on_epoch_end=None, parallel=None):
    """Train ``state`` (a :class:`regfw.state.RunState`) up to ``train.epochs``, recording metrics.

    ``parallel``: a :class:`regfw.distributed.Parallel` when torchrun started this process."""
    import torch

    settings, data, model, history = state.config.train, state.data, state.model, state.history
    epochs = settings["epochs"]
    log_every = settings["log_every"] or default_log_every(epochs)
    accuracy = "accuracy" in settings["metrics"]
    x, y = data.x_train, data.y_train
    n = len(x)
    batch = n if settings["batch_size"] == "full" else min(settings["batch_size"], n)
    # Data-parallel: every global batch, a full one too, is split across the ranks and stepped
    # through the DDP-wrapped model (the fast paths would not all-reduce the gradients).
    full_batch = batch >= n and parallel is None
    if parallel is not None:
        step = parallel.step(state)
    else:
        step = choose_step(state, full_batch_inputs=(x, y) if full_batch else None)
    model.train()
    shuffle_buffers = None
    for epoch in range(start_epoch, epochs + 1):
        log_now = epoch % log_every == 0 or epoch == epochs or epoch == 1
        if not model.training:  # only evaluate() switches it off: no module walk per epoch
            model.train()
        if full_batch:
            out, loss = step(x, y)
            if log_now:
                recorder.record(epoch, "train_loss", loss)
                if accuracy:
                    recorder.record(epoch, "train_accuracy", correct(out.detach(), y, data.task) / n)
        else:
            xs, ys = x, y
            if settings["shuffle"]:
                xs, ys = shuffle_buffers = _shuffle(x, y, state.generator, shuffle_buffers)
            total = torch.zeros((), device=x.device) if log_now else None
            hits = torch.zeros((), device=x.device) if log_now and accuracy else None
            for i in range(0, n, batch):
                xb, yb = xs[i:i + batch], ys[i:i + batch]
                if parallel is not None:  # this rank's rows of the global batch
                    xb, yb = parallel.shard(xb, yb)
                out, loss = step(xb, yb)
                if log_now:
                    total += loss.detach() * len(xb)
                    if accuracy:
                        hits += correct(out.detach(), yb, data.task)
            if log_now:
                if parallel is not None:  # every rank's rows: the mean over all n samples
                    total, hits = parallel.sum(total, hits)
                recorder.record(epoch, "train_loss", total / n)
                if accuracy:
                    recorder.record(epoch, "train_accuracy", hits / n)
        if log_now and data.has_test:
            evaluate(model, data, state.loss_fn, accuracy, epoch, recorder)
        history.epochs_done = epoch
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        recorder.maybe_drain()
    recorder.drain()
    return history


def _shuffle(x, y, generator, out=None):
    from regfw.data import shuffled

    return shuffled(x, y, generator, out)  # refills last epoch's copy: no new allocation per epoch


def evaluate(model, data, loss_fn, accuracy: bool, epoch: int, recorder: Recorder) -> None:
    import torch

    model.eval()
    with torch.no_grad():
        out = model(data.x_test)
        recorder.record(epoch, "test_loss", loss_fn(out, data.y_test))
        if accuracy:
            recorder.record(epoch, "test_accuracy", correct(out, data.y_test, data.task) / len(data.x_test))
