"""Metric curves and how they are recorded without a host sync per step.

Losses stay on the device as tensors and are read back in one ``torch.stack(...).tolist()`` when
the recorder drains (about twice a second, and at the end): that is the only CPU-GPU sync point
of the training loop. A non-finite loss seen in a drain stops the run (:class:`Diverged`).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

from regfw.errors import RegfwError
from regfw.figures import rounded as float32_value  # noqa: F401 - the name vectorize and results import

MAX_POINTS = 1000  # default metric points per curve
DRAIN_SECONDS = 0.5


class Diverged(RegfwError):
    """The loss became NaN or infinite: the run stops there, keeping everything before it."""

    def __init__(self, epoch: int, name: str, value: float, after_finite: bool = True):
        self.epoch, self.name, self.value = epoch, name, value
        if after_finite:  # finite, then not: the steps blew up
            super().__init__(f"diverged at epoch {epoch}, {name} {value}; try a smaller learning rate")
        else:  # never finite: the model or the data, which no learning rate fixes
            super().__init__(f"{name} is {value} at epoch {epoch} with no finite value before it: the model's "
                             "output or the data hold NaN or inf")


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
            values = [float32_value(v) for v in
                      torch.stack([v.detach().float().reshape(()) for _, _, v in pending]).tolist()]
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
            epoch, name, _ = bad
            raise Diverged(*bad, after_finite=any(math.isfinite(v) for e, v in self.history.curves[name] if e < epoch))
