"""What a run prints while it trains: a progress bar on a terminal (rich), plain lines otherwise,
nothing with --quiet. Progress goes to stderr so stdout stays for the summary.

rich is imported only when a bar is drawn: ``--help``, ``list`` and piped runs never load it.
It honours NO_COLOR and TERM=dumb itself.
"""

from __future__ import annotations

import sys
import time

from regfw.cli.format import fmt_duration
from regfw.figures import figure


def pace(rate: float) -> str:
    """``1,234 ep/s``, or seconds per epoch when epochs are slower than one a second."""
    if rate >= 1:
        return f"{rate:,.0f} ep/s"
    return f"{1 / rate:.1f} s/ep" if rate > 0 else "- s/ep"


def eta(seconds: float) -> str:
    return fmt_duration(seconds, digits=0)


class Reporter:
    def __init__(self, mode: str = "auto", stream=None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        self.total = 0
        self.label = ""
        self.started = 0.0
        self.next_line = 0
        self.first = 1
        self.steady_from = None
        self._progress = None
        self._task = None

    def start(self, label: str, total: int, first_epoch: int = 1) -> None:
        self.label, self.total, self.started = label, total, time.monotonic()
        self.first = first_epoch
        self.steady_from = None  # (epoch, time) at the end of the first epoch: see _pace
        self.next_line = first_epoch
        if self.mode == "bar":
            self._open_bar(first_epoch - 1)

    def _open_bar(self, done: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        console = Console(file=self.stream, highlight=False, markup=False, emoji=False)
        self._progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(bar_width=24), MofNCompleteColumn(),
                                  TextColumn("{task.fields[values]}", markup=False), TextColumn("{task.fields[pace]}", style="dim", markup=False),
                                  console=console, transient=False, refresh_per_second=8)
        self._task = self._progress.add_task(self.label, total=max(self.total, 1), completed=done, values="", pace="")
        self._progress.start()

    def _pace(self, epoch: int) -> str:
        # The first epoch carries the warm-up (imports, allocation, first kernels): measured as the
        # rate it made a 2 s run read "ETA 7m15s". So the rate is that of the epochs after it, and
        # there is no rate and no ETA until one such epoch is done.
        now = time.monotonic()
        if epoch <= self.first or self.steady_from is None:
            self.steady_from = self.steady_from or (epoch, now)
            return ""
        since, then = self.steady_from
        rate = (epoch - since) / max(now - then, 1e-9)
        left = max(self.total - epoch, 0)
        text = pace(rate)
        if left and rate > 0:
            text += f"  ETA {eta(left / rate)}"
        return text

    def update(self, epoch: int, values: dict) -> None:
        if self.mode == "quiet":
            return
        shown = "  ".join(f"{k} {figure(v)}" for k, v in values.items())
        if self.mode == "bar":
            self._progress.update(self._task, completed=epoch, values=shown, pace=self._pace(epoch))
        elif epoch >= self.next_line or epoch == self.total:
            speed = self._pace(epoch)
            speed = f"  ({speed})" if speed else ""
            self.stream.write(f"{self.label} epoch {epoch}/{self.total}  {shown}{speed}\n")
            self.stream.flush()
            self.next_line = epoch + max(1, self.total // 10)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
