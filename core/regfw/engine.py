"""The training loop.

Hot-loop rules, learned the hard way on tiny problems where the loop *is* the cost:
- no host sync per step: losses stay on the device as tensors and are read back in one
  ``torch.stack(...).tolist()`` when the recorder drains (about twice a second, and at the end);
- metrics are computed only at log points (every ``log_every``-th epoch, the first and the last);
- mini-batches are slices of one shuffled copy per epoch, not a DataLoader.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

from regfw.errors import RegfwError
from regfw.metrics import correct

MAX_POINTS = 1000  # default metric points per curve
DRAIN_SECONDS = 0.5


class Diverged(RegfwError):
    """The loss became NaN or infinite: the run stops there, keeping everything before it."""

    def __init__(self, epoch: int, name: str, value: float):
        self.epoch, self.name, self.value = epoch, name, value
        super().__init__(f"diverged at epoch {epoch}, {name} {value}; try a smaller learning rate")


def default_log_every(epochs: int) -> int:
    return max(1, math.ceil(epochs / MAX_POINTS))


@dataclass
class History:
    """Metric curves as ``{name: [(epoch, value), ...]}``, filled as the recorder drains."""

    curves: dict = field(default_factory=lambda: defaultdict(list))
    epochs_done: int = 0

    def final(self) -> dict[str, float]:
        return {name: points[-1][1] for name, points in self.curves.items() if points}

    def best(self) -> dict[str, float]:
        pick = lambda name: max if "accuracy" in name else min  # noqa: E731
        return {name: pick(name)(v for _, v in points) for name, points in self.curves.items() if points}


class Recorder:
    """Keeps metric tensors from log points and reads them back in one sync per drain."""

    def __init__(self, history: History, sink, on_progress=None):
        self.history, self.sink, self.on_progress = history, sink, on_progress
        self.pending: list = []
        self.last_drain = time.monotonic()

    def record(self, epoch: int, name: str, value) -> None:
        self.pending.append((epoch, name, value))

    def maybe_drain(self) -> None:
        if time.monotonic() - self.last_drain >= DRAIN_SECONDS:
            self.drain()

    def drain(self) -> None:
        self.last_drain = time.monotonic()
        if not self.pending:
            return
        import torch

        from regfw.interrupts import held

        # A Ctrl-C or SIGTERM waits until these rows are handed to the sink: taken out of
        # `pending` but not yet in the tracker's buffer, they would otherwise be lost.
        with held() as signals:
            pending, self.pending = self.pending, []
            # This is the CPU-GPU sync point: one per drain, never one per step.
            values = torch.stack([v.detach().float().reshape(()) for _, _, v in pending]).tolist()
            rows = [(name, value, epoch) for (epoch, name, _), value in zip(pending, values)]
            bad = next(((e, n, v) for n, v, e in rows if "loss" in n and not math.isfinite(v)), None)
            if bad is not None:
                rows = [r for r in rows if r[2] <= bad[0]]
            for name, value, epoch in rows:
                self.history.curves[name].append((epoch, value))
            self.sink(rows)
        signals.deliver()
        if self.on_progress is not None and rows:
            last_epoch = rows[-1][2]
            self.on_progress(last_epoch, {n: v for n, v, e in rows if e == last_epoch})
        if bad is not None:
            raise Diverged(*bad)


def _check_formula(model) -> None:
    if not callable(getattr(model, "formula_grad", None)):
        raise RegfwError(f"train.grad=formula needs a model with formula_grad(x, y); {type(model).__name__} has none")


def train(model, data, loss_fn, optimizer, settings: dict, *, generator, recorder: Recorder, history: History,
          start_epoch: int = 1, on_epoch_end=None) -> History:
    """Train for ``settings['epochs']`` epochs, recording metrics through ``recorder``."""
    import torch

    epochs = settings["epochs"]
    log_every = settings["log_every"] or default_log_every(epochs)
    accuracy = "accuracy" in settings["metrics"]
    formula = settings["grad"] == "formula"
    if formula:
        _check_formula(model)
    x, y = data.x_train, data.y_train
    n = len(x)
    batch = n if settings["batch_size"] == "full" else min(settings["batch_size"], n)
    full_batch = batch >= n

    def step(xb, yb):
        if formula:
            # The model computes its own gradient by formula: no autograd graph is built.
            with torch.no_grad():
                out = model(xb)
                loss = loss_fn(out, yb)
                model.formula_grad(xb, yb)
        else:
            out = model(xb)
            loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
        return out, loss

    if not formula:
        # Plain SGD: the same update with fewer ops, and a CUDA graph for full batches on a GPU.
        from regfw.fastpath import sgd_step

        step = sgd_step(model, loss_fn, optimizer, full_batch_inputs=(x, y) if full_batch else None) or step
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
                xs, ys = shuffle_buffers = _shuffle(x, y, generator, shuffle_buffers)
            total = torch.zeros((), device=x.device) if log_now else None
            hits = torch.zeros((), device=x.device) if log_now and accuracy else None
            for i in range(0, n, batch):
                xb, yb = xs[i:i + batch], ys[i:i + batch]
                out, loss = step(xb, yb)
                if log_now:
                    total += loss.detach() * len(xb)
                    if accuracy:
                        hits += correct(out.detach(), yb, data.task)
            if log_now:
                recorder.record(epoch, "train_loss", total / n)
                if accuracy:
                    recorder.record(epoch, "train_accuracy", hits / n)
        if log_now and data.has_test:
            evaluate(model, data, loss_fn, accuracy, epoch, recorder)
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
