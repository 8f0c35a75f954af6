"""Discover plugins from the ``regfw`` entry-point group and fill the registry.

Every entry point is loaded on its own (pluggy's ``load_setuptools_entrypoints`` stops at the
first import error): a plugin that fails to import, fails validation or raises while
registering is recorded with its error and everything else keeps working (``REGFW_DEBUG=1``
prints the error's traceback as it is recorded). A blocked plugin (``REGFW_DISABLE_PLUGINS``) is
never imported, so none of its code runs. A name two plugins both register is a note on both, not a
failure: only that name needs a ``plugin:name`` (see :mod:`regfw.registry`).
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata

import pluggy

from regfw import hookspecs
from regfw.errors import RegfwError, one_line
from regfw.registry import KINDS, PLURAL, Registry, registrar

GROUP = "regfw"
HOOKS = {kind: f"register_{PLURAL[kind]}" for kind in KINDS}


@dataclass
class PluginInfo:
    """What ``regfw plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | error | disabled | conflict (its plugin name is declared twice)
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # names it shares with other plugins


@dataclass
class Plugins:
    """The loaded plugin manager, the registry it filled and a record of every plugin."""

    pm: pluggy.PluginManager
    registry: Registry
    info: dict[str, PluginInfo]
    exceptions: dict[str, BaseException] = field(default_factory=dict)  # plugin -> what made it fail

    def errors(self) -> list[PluginInfo]:
        return [i for i in self.info.values() if i.status in ("error", "conflict")]


def _env_list(name: str) -> set[str]:
    return {p.strip() for p in os.environ.get(name, "").split(",") if p.strip()}


def _trace(pm: pluggy.PluginManager) -> None:
    """REGFW_TRACE_PLUGINS=1: print each hook call, the plugins that answered it and what they registered."""

    def before(hook_name, hook_impls, kwargs):
        pass

    def after(outcome, hook_name, hook_impls, kwargs):
        names = ", ".join(impl.plugin_name for impl in hook_impls) or "(none)"
        if outcome.exception is not None:
            result = f"raised {one_line(outcome.exception)}"
        else:
            registered = getattr(kwargs.get("register"), "names", None)
            result = "registered " + (", ".join(registered) or "nothing") if registered is not None else "returned"
        print(f"regfw trace: {hook_name} -> {names}: {result}", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("REGFW_TRACE_PLUGINS") == "1":
        _trace(pm)
    return pm


def _fail(record: PluginInfo, exc: BaseException, exceptions: dict, context: str = "") -> None:
    """Record why ``record``'s plugin failed; under REGFW_DEBUG=1 also print the traceback now."""
    record.status, record.error = "error", context + one_line(exc)
    exceptions[record.name] = exc
    if os.environ.get("REGFW_DEBUG") == "1":
        print(f"regfw: plugin '{record.name}' failed to load: traceback follows (REGFW_DEBUG=1)", file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


def _register_module(pm: pluggy.PluginManager, plugin: object, info: PluginInfo, exceptions: dict) -> None:
    try:
        pm.register(plugin, name=info.name)
        # A misspelled hook (register_model) is not a spec: check_pending catches it here.
        pm.check_pending()
    except Exception as exc:  # noqa: BLE001 - any failure is this plugin's, reported, not fatal
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        _fail(info, exc, exceptions)
        return
    info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])


class _HookFailed(Exception):
    def __init__(self, hook: str, exc: BaseException):
        super().__init__(hook)
        self.hook, self.exc = hook, exc


def _collect(pm: pluggy.PluginManager, info: PluginInfo) -> list:
    """Call this plugin's registration hooks alone; return its entries (all or nothing)."""
    others = [p for name, p in pm.list_name_plugin() if name != info.name]
    staged = []
    for kind, hook in HOOKS.items():
        if hook not in info.hooks:
            continue
        names: list[str] = []

        def sink(entry, names=names):
            if any(e.kind == entry.kind and e.name == entry.name for e in staged):
                raise TypeError(f"{entry.kind} '{entry.name}' is registered twice")
            staged.append(entry)
            names.append(entry.name)

        register = registrar(kind, info.name, sink)
        register.names = names  # what this call registered, for REGFW_TRACE_PLUGINS
        try:
            pm.subset_hook_caller(hook, remove_plugins=others)(register=register)
        except Exception as exc:  # noqa: BLE001 - reported as this plugin's, with the hook's name
            raise _HookFailed(hook, exc) from exc
    return staged


def load_plugins(plugins: dict[str, object] | None = None, *, entry_points: bool = True) -> Plugins:
    """Load plugins into a fresh manager and registry.

    ``plugins`` adds in-process plugin objects by name (tests, :mod:`regfw.testing`);
    ``entry_points=False`` skips discovery so only those are present.
    """
    pm = new_manager()
    registry = Registry()
    info: dict[str, PluginInfo] = {}
    exceptions: dict[str, BaseException] = {}
    disabled = _env_list("REGFW_DISABLE_PLUGINS")

    candidates = []
    if entry_points:
        for ep in metadata.entry_points(group=GROUP):
            dist = getattr(ep, "dist", None)
            candidates.append((ep.name, ep.value, dist.name if dist else None, dist.version if dist else None, ep.load))
    for name, obj in (plugins or {}).items():
        candidates.append((name, getattr(obj, "__name__", repr(obj)), None, None, partial(lambda o: o, obj)))

    for name, module, dist, version, load in candidates:
        if name in info:
            # Two distributions claim one plugin name: keep the first, report the second.
            info[name].status = "conflict"
            info[name].error = f"plugin name '{name}' is also declared by {dist or module}"
            continue
        record = info[name] = PluginInfo(name, module, dist, version)
        if name in disabled:
            pm.set_blocked(name)
            record.status = "disabled"
            continue
        try:
            plugin = load()
        except Exception as exc:  # noqa: BLE001 - isolate import failures per plugin
            _fail(record, exc, exceptions)
            continue
        _register_module(pm, plugin, record, exceptions)

    for record in info.values():
        if record.status != "ok":
            continue
        try:
            entries = _collect(pm, record)
        except _HookFailed as failed:  # a raising register hook breaks only its plugin
            _fail(record, failed.exc, exceptions, f"while registering ({failed.hook}): ")
            continue
        for entry in entries:
            registry.add(entry)
    for (kind, name), owners in registry.clashes.items():
        for owner in owners:
            others = " and ".join(f"'{p}'" for p in owners if p != owner)
            info[owner].notes.append(f"{kind} '{name}' is also registered by {others}: use {owner}:{name}")
    registry.settle({name: record.distribution for name, record in info.items()})

    if os.environ.get("REGFW_STRICT_PLUGINS") == "1":
        broken = [i for i in info.values() if i.status in ("error", "conflict")]
        if broken:
            first = broken[0]
            raise RegfwError(f"plugin '{first.name}' failed to load (REGFW_STRICT_PLUGINS=1): {first.error}")
    return Plugins(pm, registry, info, exceptions)


_loaded: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugins, loaded once (idempotent, like llm's ``load_plugins``)."""
    global _loaded
    if _loaded is None:
        _loaded = load_plugins()
    return _loaded


def reset_plugins() -> None:
    """Forget the loaded plugins so the next :func:`get_plugins` rediscovers them."""
    global _loaded
    _loaded = None
