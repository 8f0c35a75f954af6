"""Metric curves of N stacked points, read back in one sync per drain and split per point.

The stacked loop records one (N,) tensor per metric and log point; a drain stacks them, reads
them back with one ``tolist()`` and hands each point its own rows (its ``History`` and its
tracker's buffered ``log_metrics``), exactly the rows its single run's :class:`regfw.recorder.Recorder`
would write. A point whose loss turns NaN or infinite is dead from that epoch: its rows stop
there (the bad one kept, as a single run keeps it), it gets a :class:`Diverged`, the others go on.
A value is recorded at the stack's step t, which is every row's epoch unless rows joined later (a
search's refill): then ``when`` gives each row's own epoch, or None where that row does not log.
"""

from __future__ import annotations

import math
import time

from regfw.recorder import DRAIN_SECONDS, Diverged, float32_value


class StackRecorder:
    def __init__(self, histories: list, sinks: list):
        self.histories, self.sinks = histories, sinks
        self.pending: list = []  # (step, name, tensor (rows,), per-row epochs or None: every row at step)
        self.dead: dict = {}  # position -> Diverged
        self.rows = list(range(len(histories)))  # the position of each row of a recorded tensor
        self.left: dict = {}  # position -> the epoch it left the stack at (a pruned trial)
        self.last_drain = time.monotonic()

    @property
    def alive(self) -> int:
        return sum(1 for p in self.rows if p not in self.dead and p not in self.left)

    def leave(self, positions: dict, rows: list) -> None:
        """``positions`` (position -> epoch) stopped; the stack now records ``rows`` only. Call
        it drained: the tensors recorded so far have the old rows."""
        self.left |= positions
        self.rows = list(rows)

    def join(self, histories: list, sinks: list, rows: list) -> None:
        """New points (their positions follow the others') joined the stack, which now records
        ``rows``. Call it drained: the tensors recorded so far have the old rows."""
        self.histories, self.sinks = self.histories + list(histories), self.sinks + list(sinks)
        self.rows = list(rows)

    def record(self, t: int, name: str, values, when: list | None = None) -> None:
        self.pending.append((t, name, values, when))

    def maybe_drain(self) -> None:
        if time.monotonic() - self.last_drain >= DRAIN_SECONDS:
            self.drain()

    def cut(self, t: int) -> None:
        """Drop what a step cut short by a signal recorded (a single run does the same)."""
        self.pending = [p for p in self.pending if p[0] <= t]

    def drain(self) -> None:
        self.last_drain = time.monotonic()
        if not self.pending:
            return
        import torch

        from regfw.interrupts import held

        with held() as signals:  # rows taken out of `pending` reach the trackers' buffers first
            pending, self.pending = self.pending, []
            table = torch.stack([v.detach().float().reshape(-1) for _, _, v, _ in pending]).tolist()
            for row, i in enumerate(self.rows):
                if i in self.dead or i in self.left:
                    continue
                history, sink = self.histories[i], self.sinks[i]
                # rounded like a single run's Recorder rounds: float32 values to the digits they have
                rows = [(name, float32_value(values[row]), t if when is None else when[row])
                        for (t, name, _, when), values in zip(pending, table) if when is None or when[row] is not None]
                bad = next(((e, n, v) for n, v, e in rows if "loss" in n and not math.isfinite(v)), None)
                if bad is not None:
                    rows = [r for r in rows if r[2] <= bad[0]]
                    history.epochs_done = bad[0]
                for name, value, epoch in rows:
                    history.curves[name].append((epoch, value))
                if bad is not None:  # the reason a single run gives (regfw.recorder.Recorder.record)
                    epoch, name, _ = bad
                    self.dead[i] = Diverged(*bad, after_finite=any(math.isfinite(v) for e, v in history.curves[name]
                                                                   if e < epoch))
                sink(rows)
        signals.deliver()
