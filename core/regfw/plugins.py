"""Discover plugins from the ``regfw`` entry-point group and fill the registry.

Every entry point is loaded on its own (pluggy's ``load_setuptools_entrypoints`` stops at the
first import error): a plugin that fails to import, fails validation or raises while
registering is recorded with its error and everything else keeps working. A blocked plugin
(``REGFW_DISABLE_PLUGINS``) is never imported, so none of its code runs.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata

import pluggy

from regfw import hookspecs
from regfw.errors import RegfwError
from regfw.registry import KINDS, PLURAL, Registry, make_entry

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
    status: str = "ok"  # ok | error | disabled | conflict
    error: str | None = None


@dataclass
class Plugins:
    """The loaded plugin manager, the registry it filled and a record of every plugin."""

    pm: pluggy.PluginManager
    registry: Registry
    info: dict[str, PluginInfo]

    def errors(self) -> list[PluginInfo]:
        return [i for i in self.info.values() if i.status in ("error", "conflict")]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _env_list(name: str) -> set[str]:
    return {p.strip() for p in os.environ.get(name, "").split(",") if p.strip()}


def _trace(pm: pluggy.PluginManager) -> None:
    """REGFW_TRACE_PLUGINS=1: print each hook call, the plugins that answered it and what they registered."""

    def before(hook_name, hook_impls, kwargs):
        pass

    def after(outcome, hook_name, hook_impls, kwargs):
        names = ", ".join(impl.plugin_name for impl in hook_impls) or "(none)"
        if outcome.exception is not None:
            result = f"raised {_one_line(outcome.exception)}"
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


def _register_module(pm: pluggy.PluginManager, plugin: object, info: PluginInfo) -> None:
    try:
        pm.register(plugin, name=info.name)
        # A misspelled hook (register_model) is not a spec: check_pending catches it here.
        pm.check_pending()
    except Exception as exc:  # noqa: BLE001 - any failure is this plugin's, reported, not fatal
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        info.status, info.error = "error", _one_line(exc)
        return
    info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])


def _collect(pm: pluggy.PluginManager, info: PluginInfo) -> list:
    """Call this plugin's registration hooks alone; return its entries (all or nothing)."""
    others = [p for name, p in pm.list_name_plugin() if name != info.name]
    staged = []
    for kind, hook in HOOKS.items():
        if hook not in info.hooks:
            continue

        def register(name, factory=None, *, _kind=kind, **meta):
            staged.append(make_entry(_kind, info.name, name, factory, **meta))
            register.names.append(str(name))

        register.names = []  # what this call registered, for REGFW_TRACE_PLUGINS
        pm.subset_hook_caller(hook, remove_plugins=others)(register=register)
    return staged


def load_plugins(plugins: dict[str, object] | None = None, *, entry_points: bool = True) -> Plugins:
    """Load plugins into a fresh manager and registry.

    ``plugins`` adds in-process plugin objects by name (tests, :mod:`regfw.testing`);
    ``entry_points=False`` skips discovery so only those are present.
    """
    pm = new_manager()
    registry = Registry()
    info: dict[str, PluginInfo] = {}
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
            record.status, record.error = "error", _one_line(exc)
            continue
        _register_module(pm, plugin, record)

    for record in info.values():
        if record.status != "ok":
            continue
        try:
            entries = _collect(pm, record)
        except Exception as exc:  # noqa: BLE001 - a raising register hook breaks only its plugin
            record.status, record.error = "error", f"while registering: {_one_line(exc)}"
            continue
        for entry in entries:
            message = registry.add(entry)
            if message:
                for plugin_name in registry.conflicts[(entry.kind, entry.name)]:
                    info[plugin_name].status, info[plugin_name].error = "conflict", message

    if os.environ.get("REGFW_STRICT_PLUGINS") == "1":
        broken = [i for i in info.values() if i.status in ("error", "conflict")]
        if broken:
            first = broken[0]
            raise RegfwError(f"plugin '{first.name}' failed to load (REGFW_STRICT_PLUGINS=1): {first.error}")
    return Plugins(pm, registry, info)


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
