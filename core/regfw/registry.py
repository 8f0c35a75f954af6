"""Name → component registries: metadata plus a lazy factory, never a built object.

Listing reads only the metadata here, so ``regfw list`` costs nothing however heavy the
components are. A name registered by two plugins is a conflict: neither wins silently; using the
name is an error that names both plugins (timm overwrites with a warning; we do not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from regfw.errors import RegfwError, did_you_mean
from regfw.params import Param, as_params

KINDS = ("model", "dataset", "loss", "optimizer", "experiment")
PLURAL = {"model": "models", "dataset": "datasets", "loss": "losses", "optimizer": "optimizers", "experiment": "experiments"}
TRAIN_KEYS = ("epochs", "batch_size", "shuffle", "log_every", "metrics", "grad")


@dataclass(frozen=True)
class Ref:
    """A component chosen by name, with parameter overrides over its defaults."""

    name: str
    params: dict = field(default_factory=dict)

    @classmethod
    def of(cls, value: Any, what: str) -> "Ref":
        if isinstance(value, Ref):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict):
            return cls(value[0], dict(value[1]))
        raise TypeError(f"{what} must be a name or (name, {{params}}), got {value!r}")


@dataclass(frozen=True)
class Entry:
    """One registered component. ``factory`` is only called when a run builds it."""

    kind: str
    name: str
    plugin: str
    description: str = ""
    factory: Callable | None = None
    params: dict[str, Param] = field(default_factory=dict)
    # Datasets: params -> {"in_features": n, "out_features": m}, cheap (no torch), so a swapped-in
    # model's unset sizes can be resolved before anything is built.
    dims: Callable[[dict], dict] | None = None
    # Experiments: the composition.
    parts: dict[str, Ref] = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    seed: int | None = None
    extras: dict = field(default_factory=dict)


def make_entry(kind: str, plugin: str, name: Any, factory: Callable | None = None, **meta) -> Entry:
    """Validate what a plugin passed to ``register`` and turn it into an :class:`Entry`."""
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise TypeError(f"{kind} name must be a non-empty string without spaces, got {name!r}")
    description = meta.pop("description", "") or ""
    if kind == "experiment":
        if factory is not None:
            raise TypeError("experiments are compositions: pass dataset=, model=, loss=, optimizer=, not a factory")
        parts = {}
        for part in ("dataset", "model", "loss", "optimizer"):
            if part not in meta:
                raise TypeError(f"experiment '{name}' needs {part}=")
            parts[part] = Ref.of(meta.pop(part), part)
        train = dict(meta.pop("train", {}) or {})
        unknown = set(train) - set(TRAIN_KEYS)
        if unknown:
            raise TypeError(f"experiment '{name}': unknown train keys {sorted(unknown)}; valid: {list(TRAIN_KEYS)}")
        seed = meta.pop("seed", None)
        extras = meta.pop("extras", {}) or {}
        if meta:
            raise TypeError(f"experiment '{name}': unexpected arguments {sorted(meta)}")
        return Entry(kind, name, plugin, description, parts=parts, train=train, seed=seed, extras=extras)
    if not callable(factory):
        raise TypeError(f"{kind} '{name}' needs a callable factory, got {factory!r}")
    params = as_params(meta.pop("params", None))
    dims = meta.pop("dims", None) if kind == "dataset" else None
    extras = meta.pop("extras", {}) or {}
    if meta:
        raise TypeError(f"{kind} '{name}': unexpected arguments {sorted(meta)}")
    return Entry(kind, name, plugin, description, factory, params, dims=dims, extras=extras)


class Registry:
    """All registered components, by kind and name, plus the names two plugins both claimed."""

    def __init__(self):
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.conflicts: dict[tuple[str, str], list[str]] = {}

    def add(self, entry: Entry) -> str | None:
        """Add ``entry``; on a duplicate name return a message naming both plugins."""
        table = self.entries[entry.kind]
        key = (entry.kind, entry.name)
        if key in self.conflicts:
            self.conflicts[key].append(entry.plugin)
            return self._conflict_message(key)
        if entry.name in table:
            first = table.pop(entry.name)
            self.conflicts[key] = [first.plugin, entry.plugin]
            return self._conflict_message(key)
        table[entry.name] = entry
        return None

    def _conflict_message(self, key: tuple[str, str]) -> str:
        kind, name = key
        plugins = " and ".join(f"'{p}'" for p in self.conflicts[key])
        return (
            f"{kind} '{name}' is registered by both plugins {plugins}; "
            f"block one with REGFW_DISABLE_PLUGINS=<plugin>"
        )

    def get(self, kind: str, name: str) -> Entry:
        if (kind, name) in self.conflicts:
            raise RegfwError(self._conflict_message((kind, name)))
        table = self.entries[kind]
        if name not in table:
            from regfw.params import _show  # the name as typed, cut short and on one line

            raise RegfwError(f"unknown {kind} {_show(name)}" + did_you_mean(str(name), table))
        return table[name]

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def all(self, kind: str) -> list[Entry]:
        return [self.entries[kind][n] for n in self.names(kind)]
