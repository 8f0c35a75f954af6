"""How the environment a rerun is about to train in differs from the one the run recorded.

Both sides are run tags (:mod:`regfw.provenance`): the recorded run's, and the ones the rerun is
about to be created with, so a fact is compared exactly as it is stored. A fact the old run never
recorded (a run older than the tag) is named as not compared, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from regfw.config import PARTS
from regfw.store import param_text, same_param
from regfw.store import tags as T

# (what the table calls it, the tag): in the order the table prints them
FACTS = (
    ("regfw", T.VERSION),
    ("torch", T.TORCH_VERSION),
    ("Python", T.PYTHON_VERSION),
    ("MLflow", T.MLFLOW_VERSION),
    ("experiment plugin", T.EXPERIMENT_PLUGIN),
    *((f"{part} plugin", T.component_plugin(part)) for part in PARTS),
    ("git commit", T.GIT_COMMIT),
    ("git tree dirty", T.GIT_DIRTY),
    ("device", T.DEVICE),
    ("device name", T.DEVICE_NAME),
    ("threads", T.THREADS),
    ("processes", T.WORLD_SIZE),
    ("data fingerprint", T.DATA_FINGERPRINT),
    ("data file sha256", "regfw.data.sha256"),
    ("test file sha256", "regfw.data.test_sha256"),
)
# Facts that can change the numbers without changing the configuration: a difference found by --verify
# may come from them (the MLflow version only stores the numbers).
CAUSES = {name for name, _ in FACTS} - {"MLflow"}
OPTIONAL = {"processes": "1"}  # absent means this (a single-process run writes no world size)
HASHES = {"git commit", "data fingerprint", "data file sha256", "test file sha256"}


@dataclass
class Row:
    name: str
    recorded: str
    now: str


@dataclass
class Environment:
    differ: list[Row] = field(default_factory=list)  # facts, then configuration values
    not_recorded: list[str] = field(default_factory=list)
    compared: int = 0

    @property
    def causes(self) -> list[str]:
        """The differing facts a numerical difference may come from."""
        return [row.name for row in self.differ if row.name in CAUSES]

    @property
    def changed(self) -> list[str]:
        """The configuration values that differ (given with --set, or new in a plugin)."""
        facts = {name for name, _ in FACTS}
        return [row.name for row in self.differ if row.name not in facts]


def _shown(name: str, value: str | None) -> str:
    if value is None:
        return "(none)"
    return value[:12] if name in HASHES else value


def compare(recorded_tags: dict, now_tags: dict, recorded_params: dict | None = None,
            now_params: dict | None = None) -> Environment:
    """The facts (and, given both, the configuration values) that differ."""
    env = Environment()
    for name, tag in FACTS:
        before, after = recorded_tags.get(tag), now_tags.get(tag)
        if name in OPTIONAL:
            before, after = before or OPTIONAL[name], after or OPTIONAL[name]
        if before is None and after is None:
            continue  # neither side has it (a generated dataset has no file sha256)
        if before is None:
            env.not_recorded.append(name)
            continue
        env.compared += 1
        if str(before) != str(after):
            env.differ.append(Row(name, _shown(name, str(before)), _shown(name, None if after is None else str(after))))
    if recorded_params is not None and now_params is not None:
        for key, value in now_params.items():
            if key not in recorded_params:
                env.differ.append(Row(key, "(not recorded)", param_text(value)))
            elif not same_param(recorded_params[key], value):
                env.differ.append(Row(key, recorded_params[key], param_text(value)))
    return env


def table(env: Environment) -> list[str]:
    """The lines to print: what differs as a short table, then what could not be compared."""
    lines = []
    if env.differ:
        width = max(len("what"), *(len(r.name) for r in env.differ))
        left = max(len("recorded"), *(len(r.recorded) for r in env.differ))
        lines.append(f"  {'what':<{width}}  {'recorded':<{left}}  now")
        lines += [f"  {r.name:<{width}}  {r.recorded:<{left}}  {r.now}" for r in env.differ]
    else:
        lines.append(f"  environment as recorded ({env.compared} facts compared)")
    if env.not_recorded:
        lines.append(f"  not recorded by the run, not compared: {', '.join(env.not_recorded)}")
    return lines
