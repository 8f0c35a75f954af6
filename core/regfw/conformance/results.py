"""What a conformance check reports: the outcome of one check, of one component, of one plugin."""

from __future__ import annotations

from dataclasses import dataclass, field


class Failed(Exception):
    """One check failed: ``check`` names it, the message says why, in one line."""

    def __init__(self, check: str, reason: str):
        super().__init__(f"{check}: {reason}")
        self.check, self.reason = check, reason


class Skipped(Exception):
    """The component cannot be exercised here (its data is missing); not a bug in it."""


@dataclass
class ComponentResult:
    kind: str
    name: str
    plugin: str
    status: str  # ok | fail | skip
    passed: list[str] = field(default_factory=list)
    reason: str | None = None
    context: str | None = None  # what it was checked with, e.g. "experiment 'sine'"

    def line(self) -> str:
        label = {"ok": "ok  ", "fail": "FAIL", "skip": "skip"}[self.status]
        detail = ", ".join(self.passed) if self.status == "ok" else self.reason
        if self.status == "fail" and self.context and self.context != f"experiment '{self.name}'":
            detail += f" (checked with {self.context})"
        return f"{label}  {self.kind:<10} {self.name:<20} {detail}"


@dataclass
class CheckReport:
    """The outcome of checking one plugin; ``assert_ok()`` for pytest."""

    plugin: str
    components: list[ComponentResult] = field(default_factory=list)
    error: str | None = None  # the plugin itself failed to load, or registers nothing

    @property
    def failures(self) -> list[ComponentResult]:
        return [c for c in self.components if c.status == "fail"]

    @property
    def passed(self) -> list[ComponentResult]:
        return [c for c in self.components if c.status == "ok"]

    @property
    def skipped(self) -> list[ComponentResult]:
        return [c for c in self.components if c.status == "skip"]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failures

    def lines(self) -> list[str]:
        head = [f"FAIL  plugin     {self.plugin:<20} {self.error}"] if self.error else []
        return head + [c.line() for c in self.components]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def assert_ok(self) -> "CheckReport":
        if not self.ok:
            bad = ([f"plugin {self.plugin}: {self.error}"] if self.error else []) + [
                f"{c.kind} '{c.name}': {c.reason}" for c in self.failures
            ]
            raise AssertionError(f"plugin '{self.plugin}' does not conform:\n  " + "\n  ".join(bad))
        return self
