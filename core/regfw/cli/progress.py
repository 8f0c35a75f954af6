"""What a run prints while it trains: a progress bar on a terminal, plain lines otherwise,
nothing with --quiet. Progress goes to stderr so stdout stays for the summary."""

from __future__ import annotations

import sys
import time


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

    def start(self, label: str, total: int, first_epoch: int = 1) -> None:
        self.label, self.total, self.started = label, total, time.monotonic()
        self.first = first_epoch
        self.next_line = first_epoch

    def update(self, epoch: int, values: dict) -> None:
        if self.mode == "quiet":
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (epoch - self.first + 1) / elapsed
        shown = "  ".join(f"{k} {v:.6g}" for k, v in values.items())
        if self.mode == "bar":
            width = 24
            filled = int(width * epoch / max(self.total, 1))
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {epoch}/{self.total}  {shown}  {rate:,.0f} ep/s ")
            self.stream.flush()
        elif epoch >= self.next_line or epoch == self.total:
            self.stream.write(f"{self.label} epoch {epoch}/{self.total}  {shown}  ({rate:,.0f} ep/s)\n")
            self.stream.flush()
            self.next_line = epoch + max(1, self.total // 10)

    def finish(self) -> None:
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()
