"""What a plugin author needs in their own pytest suite.

    import my_plugin
    from regfw.testing import check_plugin, plugins_for, run_experiment

    def test_conforms():
        check_plugin(my_plugin).assert_ok()

    def test_learns(tmp_path):
        result = run_experiment("my-experiment", my_plugin, epochs=50, store=tmp_path)
        assert result.curve("train_loss")[-1] < result.curve("train_loss")[0]

Everything here works on the plugin objects you pass in, not on whatever happens to be installed:
a test sees your plugin plus regfw's bundled ``torch`` building blocks (losses, optimizers, ``mlp``),
so it gives the same answer on your machine and in CI. Importing this module does not import
torch or mlflow; the functions do, when called.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterable, Mapping

from regfw.conformance import CheckReport, ComponentResult, check_registered
from regfw.errors import RegfwError
from regfw.plugins import GROUP, Plugins, load_plugins

__all__ = ["plugins_for", "run_experiment", "check_plugin", "RunResult", "CheckReport", "ComponentResult"]

DEFAULT_INCLUDE = ("torch",)


def _installed(names: Iterable[str]) -> dict[str, object]:
    """Load the installed plugins called ``names`` from the ``regfw`` entry points."""
    wanted = list(names)
    found = {ep.name: ep for ep in metadata.entry_points(group=GROUP) if ep.name in wanted}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise RegfwError(f"no installed regfw plugin called {', '.join(map(repr, missing))}")
    return {name: found[name].load() for name in wanted}


def _named(plugins) -> dict[str, object]:
    if plugins is None:
        return {}
    if isinstance(plugins, Mapping):
        return dict(plugins)
    if not isinstance(plugins, (list, tuple)):
        plugins = [plugins]
    out = {}
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        out[name] = plugin
    return out


def plugins_for(*plugins, include: Iterable[str] = DEFAULT_INCLUDE) -> Plugins:
    """A fresh plugin manager and registry holding only ``plugins`` (and the installed ``include``).

    ``plugins`` are modules (or any objects with ``@hookimpl`` functions), named after their
    ``__name__``; pass a mapping ``{"name": module}`` to choose the names. ``include`` names installed
    plugins to add, by default regfw's ``torch`` plugin so an experiment can reuse ``mse`` or ``adam``;
    ``include=()`` gives exactly the plugins passed. A plugin that fails to register raises here.
    """
    named = {}
    for plugin in plugins:
        named.update(_named(plugin))
    everything = _installed([n for n in include if n not in named]) | named
    loaded = load_plugins(everything, entry_points=False)
    broken = loaded.errors()
    if broken:
        raise RegfwError("; ".join(f"plugin '{i.name}' failed to load: {i.error}" for i in broken))
    return loaded


def _as_plugins(plugins, include) -> Plugins:
    if isinstance(plugins, Plugins):
        return plugins
    if plugins is None:
        return load_plugins()
    return plugins_for(plugins, include=include)


def check_plugin(plugin, *, include: Iterable[str] = DEFAULT_INCLUDE, device: str = "cpu", seed: int = 0,
                 name: str | None = None) -> CheckReport:
    """Check every component ``plugin`` registers; ``.assert_ok()`` fails a test with every reason.

    ``plugin`` is a module or plugin object (loaded alone with ``include``), or the name of an
    installed plugin (checked among everything installed, as ``regfw check NAME`` does).
    """
    if isinstance(plugin, str):
        return check_registered(load_plugins(), plugin, device=device, seed=seed)
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    loaded = load_plugins(_installed([n for n in include if n != name]) | {name: plugin}, entry_points=False)
    return check_registered(loaded, name, device=device, seed=seed)


@dataclass
class RunResult:
    """How a run ended and what it measured."""

    status: str  # FINISHED | FAILED | KILLED
    metrics: dict  # final_*, best_*, train_seconds, optimum_loss, excess_loss, learned.*
    curves: dict  # {"train_loss": [(epoch, value), ...], ...}
    learned: dict
    config: object  # regfw.config.Config
    run_id: str | None
    tracking_uri: str | None
    error: str | None = None
    outcome: object = field(default=None, repr=False)

    def curve(self, name: str = "train_loss") -> list[float]:
        """The values of one metric, in epoch order."""
        if name not in self.curves:
            raise KeyError(f"no metric '{name}'; recorded: {', '.join(sorted(self.curves))}")
        return [value for _, value in self.curves[name]]


_temporary_stores: list[str] = []


def _temporary_store() -> Path:
    if not _temporary_stores:
        atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _temporary_stores])
    folder = tempfile.mkdtemp(prefix="regfw-test-store-")
    _temporary_stores.append(folder)
    return Path(folder)


def run_experiment(experiment: str, plugins=None, *, epochs: int | None = 3, device: str = "cpu",
                   seed: int | None = None, sets: Mapping[str, object] | None = None,
                   model: str | None = None, dataset: str | None = None, loss: str | None = None,
                   optimizer: str | None = None, store: str | Path | None = None, track: bool = True,
                   include: Iterable[str] = DEFAULT_INCLUDE, check: bool = True) -> RunResult:
    """Run ``experiment`` for a few epochs and return its metrics, recorded in a temporary MLflow store.

    ``plugins``: a module, a list or mapping of them (see :func:`plugins_for`), a :class:`Plugins`,
    or None for everything installed. ``sets`` are ``--set`` overrides (``{"optimizer.lr": 0.1}``);
    ``model=`` etc. swap components as ``--model`` does. ``store`` is a folder for the SQLite store
    (default: a temporary one removed at exit); ``track=False`` skips MLflow (faster). With
    ``check`` (the default) a run that does not finish raises ``AssertionError`` with its reason.
    """
    from regfw.config import resolve
    from regfw.runner import execute
    from regfw.store import MlflowTracker, NullTracker

    loaded = _as_plugins(plugins, include)
    flags = {"device": device, "train.epochs": epochs, "seed": seed}
    config = resolve(loaded.registry, experiment, sets=list((sets or {}).items()),
                     swaps={"model": model, "dataset": dataset, "loss": loss, "optimizer": optimizer}, flags=flags)
    if track:
        folder = Path(store) if store is not None else _temporary_store()
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder.resolve() / 'mlflow.db'}"
        tracker = MlflowTracker(uri, experiment)
    else:
        uri, tracker = None, NullTracker()
    outcome = execute(config, loaded, tracker, run_name=f"{experiment} (regfw.testing)")
    result = RunResult(outcome.status, dict(outcome.summary), {k: list(v) for k, v in outcome.history.curves.items()},
                       dict(outcome.learned), config, outcome.run_id, uri, outcome.error, outcome)
    if check and outcome.status != "FINISHED":
        raise AssertionError(f"experiment '{experiment}' ended {outcome.status}: {outcome.error}")
    return result
