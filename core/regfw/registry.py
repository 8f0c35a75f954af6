"""Name → component registries: metadata plus a lazy factory, never a built object.

Listing reads only the metadata here, so ``regfw list`` costs nothing however heavy the
components are. A name registered by two plugins is a clash that affects that name only: neither
wins silently, each is kept under its qualified name (``torch:mse``, ``cubic:mse``), the plain
name a user types is an error that says how to choose, and every other name of both plugins keeps
working (timm overwrites with a warning; we do not). A plain name inside an experiment follows a
fixed rule instead (its own plugin, its distribution, regfw's built-ins: :meth:`Registry.settle`),
so installing a plugin never changes what an existing experiment means. ``plugin:name`` is accepted for any name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from regfw.errors import RegfwError, did_you_mean, show
from regfw.params import Param, as_params
from regfw.train_schema import TRAIN_KEYS

KINDS = ("model", "dataset", "loss", "optimizer", "experiment")
PLURAL = {"model": "models", "dataset": "datasets", "loss": "losses", "optimizer": "optimizers", "experiment": "experiments"}
PARTS = ("dataset", "model", "loss", "optimizer")
SEP = ":"  # plugin:name
BUILTIN_DISTRIBUTION = "regfw"  # ships the built-in plugins


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
    """One registered component. ``factory`` is only called when a run builds it.

    ``name`` is the key the registry knows it by: the plain name, or ``plugin:name`` when another
    plugin registers the same name (see :meth:`Registry.add`)."""

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
    # Experiments: write(folder, run) with run a regfw.protocols.RunView, after training.
    artifacts: Callable | None = None
    extras: dict = field(default_factory=dict)


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name) or SEP in name:
        raise TypeError(f"{kind} name must be a non-empty string without spaces or '{SEP}', got {show(name)}")


def _common(kind: str, name: Any, description: Any, extras: Any) -> tuple[str, dict]:
    _check_name(kind, name)
    if description is not None and not isinstance(description, str):
        raise TypeError(f"{kind} '{name}': description must be a string, got {show(description)}")
    if extras is not None and not isinstance(extras, dict):
        raise TypeError(f"{kind} '{name}': extras must be a dict, got {show(extras)}")
    return description or "", dict(extras or {})


def _component(kind: str, plugin: str, name, factory, description, params, extras, dims=None) -> Entry:
    description, extras = _common(kind, name, description, extras)
    if not callable(factory):
        raise TypeError(f"{kind} '{name}' needs a callable factory, got {show(factory)}")
    if dims is not None and not callable(dims):
        raise TypeError(f"dataset '{name}': dims must be a callable params -> sizes, got {show(dims)}")
    return Entry(kind, name, plugin, description, factory, as_params(params), dims=dims, extras=extras)


def registrar(kind: str, plugin: str, sink: Callable[[Entry], None]) -> Callable:
    """The ``register`` callback a ``register_<kind>s`` hook of ``plugin`` receives.

    Real keyword-only parameters, one signature per kind, so a misspelled keyword is Python's own
    TypeError (``register() got an unexpected keyword argument 'dimz'``) at the plugin's line."""
    if kind == "dataset":
        def register(name, factory, *, description="", params=None, dims=None, extras=None):
            sink(_component(kind, plugin, name, factory, description, params, extras, dims))
    elif kind == "experiment":
        def register(name, *, description="", dataset, model, loss, optimizer, train=None, seed=None,
                     artifacts=None, extras=None):
            sink(experiment_entry(plugin, name, description=description, parts=dict(
                dataset=dataset, model=model, loss=loss, optimizer=optimizer), train=train, seed=seed,
                artifacts=artifacts, extras=extras))
    else:
        def register(name, factory, *, description="", params=None, extras=None):
            sink(_component(kind, plugin, name, factory, description, params, extras))
    # Python names the function in a wrong-argument TypeError: "register()", as the plugin wrote it.
    register.__qualname__ = "register"
    if hasattr(register.__code__, "co_qualname"):  # 3.11+ takes the name from the code object
        register.__code__ = register.__code__.replace(co_qualname="register")
    return register


def experiment_entry(plugin: str, name, *, description="", parts: dict, train=None, seed=None, artifacts=None,
                     extras=None) -> Entry:
    description, extras = _common("experiment", name, description, extras)
    refs = {part: Ref.of(parts[part], f"experiment '{name}': {part}") for part in PARTS}
    if train is not None and not isinstance(train, dict):
        raise TypeError(f"experiment '{name}': train must be a dict, got {show(train)}")
    train = dict(train or {})
    unknown = set(train) - set(TRAIN_KEYS)
    if unknown:
        raise TypeError(f"experiment '{name}': unknown train keys {sorted(unknown)}; valid: {list(TRAIN_KEYS)}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise TypeError(f"experiment '{name}': seed must be a non-negative integer, got {show(seed)}")
    if artifacts is not None and not callable(artifacts):
        raise TypeError(f"experiment '{name}': artifacts must be a callable write(folder, run), got {show(artifacts)}")
    return Entry("experiment", name, plugin, description, parts=refs, train=train, seed=seed, artifacts=artifacts,
                 extras=extras)


class Registry:
    """All registered components, by kind and name, plus the names several plugins both claimed."""

    def __init__(self):
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.clashes: dict[tuple[str, str], list[str]] = {}  # (kind, plain name) -> the plugins, in load order

    def add(self, entry: Entry) -> str | None:
        """Add ``entry``; on a name another plugin also registers, keep both under qualified names
        (``plugin:name``) and return a note naming the plugins."""
        table = self.entries[entry.kind]
        key = (entry.kind, entry.name)
        if key not in self.clashes and entry.name not in table:
            table[entry.name] = entry
            return None
        if key not in self.clashes:
            first = table.pop(entry.name)
            self.clashes[key] = [first.plugin]
            table[f"{first.plugin}{SEP}{first.name}"] = replace(first, name=f"{first.plugin}{SEP}{first.name}")
        self.clashes[key].append(entry.plugin)
        table[f"{entry.plugin}{SEP}{entry.name}"] = replace(entry, name=f"{entry.plugin}{SEP}{entry.name}")
        return self.clash_message(entry.kind, entry.name)

    def clash_message(self, kind: str, name: str) -> str:
        plugins = sorted(self.clashes[(kind, name)])  # not load order: the same message on every machine
        quoted = [f"'{p}'" for p in plugins]
        how = [f"--{kind} {p}{SEP}{name}" if kind != "experiment" else f"{p}{SEP}{name}" for p in plugins]
        return (f"{kind} '{name}' is registered by plugins {', '.join(quoted[:-1])} and {quoted[-1]}; "
                f"choose one with {', '.join(how[:-1])} or {how[-1]}")

    def get(self, kind: str, name: str) -> Entry:
        """The entry called ``name`` (plain or ``plugin:name``), or a one-line error that says why not."""
        table = self.entries[kind]
        if isinstance(name, str) and name in table:
            return table[name]
        if isinstance(name, str) and (kind, name) in self.clashes:
            raise RegfwError(self.clash_message(kind, name))
        if isinstance(name, str) and SEP in name:
            plugin, _, plain = name.rpartition(SEP)
            entry = table.get(plain)
            if entry is not None and entry.plugin == plugin:
                return entry
            owners = self.clashes.get((kind, plain)) or ([entry.plugin] if entry is not None else [])
            if owners:
                raise RegfwError(f"{kind} '{plain}' is not registered by plugin {show(plugin)}; it is by "
                                 + " and ".join(f"'{p}'" for p in owners))
        choices = list(table) + [plain for (k, plain) in self.clashes if k == kind]
        raise RegfwError(f"unknown {kind} {show(name)}" + did_you_mean(str(name), choices))

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def all(self, kind: str) -> list[Entry]:
        return [self.entries[kind][n] for n in self.names(kind)]

    def settle(self, distribution: dict[str, str | None]) -> None:
        """Point each experiment's parts at the registry's key for them, once every plugin is in.

        A part named by a plain name several plugins register means, in this order: the component
        of the experiment's own plugin, else of its own distribution (the package that shipped
        both), else regfw's built-in one; a step that finds exactly one wins. So installing another
        plugin never changes or breaks what an existing experiment means. Only a clash among the
        rest (two third-party plugins, neither the experiment's) stays ambiguous: resolving the
        experiment is then the clash error, and any override of that part still works.
        ``plugin:name`` of a name nobody else registers becomes the plain name."""
        experiments = self.entries["experiment"]
        for key, exp in list(experiments.items()):
            parts = {part: self._settle_ref(part, ref, exp.plugin, distribution) for part, ref in exp.parts.items()}
            if parts != exp.parts:
                experiments[key] = replace(exp, parts=parts)

    def _settle_ref(self, kind: str, ref: Ref, owner: str, distribution: dict[str, str | None]) -> Ref:
        plugins = self.clashes.get((kind, ref.name))
        if plugins is None:
            try:
                return replace(ref, name=self.get(kind, ref.name).name)
            except RegfwError:  # unknown: reported when the experiment is resolved
                return ref
        home = distribution.get(owner)
        for wins in (lambda p: p == owner, lambda p: home is not None and distribution.get(p) == home,
                     lambda p: distribution.get(p) == BUILTIN_DISTRIBUTION):
            mine = [p for p in plugins if wins(p)]
            if len(mine) == 1:
                return replace(ref, name=f"{mine[0]}{SEP}{ref.name}")
        return ref

    def ambiguous_parts(self, experiment: Entry) -> dict[str, str]:
        """The experiment's parts whose plain name stays a clash (see :meth:`settle`): part -> name."""
        return {part: ref.name for part, ref in experiment.parts.items() if (part, ref.name) in self.clashes}
