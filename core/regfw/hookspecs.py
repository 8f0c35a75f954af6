"""The hooks a regfw plugin may implement. Each is handed a ``register`` callback."""

import pluggy

PROJECT = "regfw"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register):
    """Register models: ``register(name, factory, *, description="", params=None, extras=None)``."""


@hookspec
def register_datasets(register):
    """Register datasets: ``register(name, factory, *, description="", params=None, dims=None, extras=None)``."""


@hookspec
def register_losses(register):
    """Register losses: ``register(name, factory, *, description="", params=None, extras=None)``."""


@hookspec
def register_optimizers(register):
    """Register optimizers: ``register(name, factory, *, description="", params=None, extras=None)``."""


@hookspec
def register_experiments(register):
    """Register experiments: ``register(name, *, description="", dataset, model, loss, optimizer, train=None, seed=None, artifacts=None, extras=None)``."""
