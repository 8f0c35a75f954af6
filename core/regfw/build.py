"""Building a run's parts from its configuration: seeded, in a fixed order, each checked.

The order is part of reproducibility: the global seed, then the dataset (from its own generator),
the model, the loss, the move to the device, the optimizer, and last the shuffle generator. A
vectorized sweep, ``regfw landscape`` and ``resume`` build through here and get the same tensors
as a plain run. A factory that raises or returns the wrong kind of object is a one-line error that
names the component and its plugin, raised before any MLflow run exists.
"""

from __future__ import annotations

import contextlib
import random

from regfw.config import PARTS, Config
from regfw.data import Data
from regfw.errors import RegfwError, one_line
from regfw.state import RunState


def entries(config: Config, registry) -> dict:
    """The registry entry of each of the run's four parts."""
    return {part: registry.get(part, getattr(config, part).name) for part in PARTS}


def call_factory(entry, params: dict, *args, **kwargs):
    """``entry.factory(*args, **params)``; a plugin's exception becomes one line naming it."""
    try:
        return entry.factory(*args, **kwargs, **params)
    except RegfwError:
        raise
    except Exception as exc:  # noqa: BLE001 - name the plugin, not a traceback
        raise RegfwError(f"{entry.kind} '{entry.name}' from plugin '{entry.plugin}' failed: {one_line(exc)}") from exc


def wrong_type(entry, got) -> str | None:
    """Why ``got``, what ``entry``'s factory returned, is not what a component of its kind must be
    (None when it is). ``run`` and ``regfw check`` both say this sentence."""
    import torch

    if entry.kind == "dataset":
        ok, wanted = isinstance(got, Data), "regfw.Data"
    elif entry.kind == "model":
        ok, wanted = isinstance(got, torch.nn.Module), "a torch.nn.Module"
    elif entry.kind == "loss":
        ok, wanted = callable(got), "a callable loss"
    else:
        ok = all(callable(getattr(got, name, None)) for name in ("step", "zero_grad", "state_dict"))
        wanted = "a torch.optim.Optimizer"
    return None if ok else str(_wrong_type(entry, got, wanted))


def _wrong_type(entry, got, wanted: str) -> RegfwError:
    return RegfwError(f"{entry.kind} '{entry.name}' from plugin '{entry.plugin}' returned {type(got).__name__}, "
                      f"not {wanted}")


def _checked(entry, got):
    """``got``, or the one-line error of :func:`wrong_type`."""
    reason = wrong_type(entry, got)
    if reason is not None:
        raise RegfwError(reason)
    return got


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy comes with torch's usual installs
        pass


def build_data(config: Config, registry) -> Data:
    """The dataset alone, from the generator seeded with the run's seed."""
    import torch

    entry = registry.get("dataset", config.dataset.name)
    data = call_factory(entry, config.dataset.params, generator=torch.Generator().manual_seed(config.seed))
    if not isinstance(data, Data):
        raise _wrong_type(entry, data, "regfw.Data")
    from regfw.provenance import data_fingerprint
    from regfw.store import tags as T

    # Recorded with the dataset's own tags, by every path that starts runs (single, vectorized, torchrun).
    data.tags = dict(data.tags) | {T.DATA_FINGERPRINT: data_fingerprint(data)}
    return data


_SHARED: dict | None = None  # (dataset, params, seed) -> (Data, RNG states after it): see shared_data()


@contextlib.contextmanager
def shared_data():
    """Inside the block, points built in this process that ask for the same dataset (name,
    params, seed) get the first one's tensors instead of building it again: a sweep or search over
    optimizer values builds mlp-regression's 10000 x 500 samples once, not once per point (0.44 s
    each), and its stacks compare their points' data by identity. The global random states a
    build leaves are restored too, so the model that follows starts from the weights it would
    get after building the data itself. A file-backed dataset (one with an MLflow ``source``) is
    always read again. Scoped to one sweep or search: a file replaced between two is read anew."""
    global _SHARED
    outer, _SHARED = _SHARED, ({} if _SHARED is None else _SHARED)
    try:
        yield
    finally:
        _SHARED = outer


def _random_states():
    import numpy
    import torch

    return torch.get_rng_state(), numpy.random.get_state(), random.getstate()


def _restore(states) -> None:
    import numpy
    import torch

    torch.set_rng_state(states[0])
    numpy.random.set_state(states[1])
    random.setstate(states[2])


def _data_for(config: Config, registry) -> Data:
    """:func:`build_data`, or the data a point of the same sweep built (see :func:`shared_data`)."""
    import json
    from dataclasses import replace

    if _SHARED is None:
        return build_data(config, registry)
    key = (config.dataset.name, json.dumps(config.dataset.params, sort_keys=True, default=str), config.seed)
    if key in _SHARED:
        data, states = _SHARED[key]
        _restore(states)
        return replace(data, tags=dict(data.tags), artifacts=dict(data.artifacts))
    data = build_data(config, registry)
    if data.source is None:
        _SHARED[key] = (data, _random_states())
    return replace(data, tags=dict(data.tags), artifacts=dict(data.artifacts))


def build_model(config: Config, registry):
    entry = registry.get("model", config.model.name)
    return _checked(entry, call_factory(entry, config.model.params))


def build_loss(config: Config, registry):
    entry = registry.get("loss", config.loss.name)
    return _checked(entry, call_factory(entry, config.loss.params))


def build_optimizer(config: Config, registry, parameters):
    from regfw.lean import skip_dynamo_import

    skip_dynamo_import()  # torch.optim would import torch.compile's machinery for nothing
    entry = registry.get("optimizer", config.optimizer.name)
    return _checked(entry, call_factory(entry, config.optimizer.params, parameters))


def build_state(config: Config, registry, device, *, check_size: bool = False) -> RunState:
    """Every part of the run, seeded and on ``device``, ready for epoch 1. ``check_size``: first
    refuse a model whose training cannot fit the device's memory (:mod:`regfw.sizing`, on the
    meta device: nothing allocated), before a minute spent failing to allocate it."""
    import torch

    seed_everything(config.seed)
    data = _data_for(config, registry)
    if check_size:
        from regfw.sizing import check_model_fits

        check_model_fits(config, registry, data=data)
    model = build_model(config, registry)
    loss_fn = build_loss(config, registry)
    try:
        model.to(device)
        data = data.to(device)
    except RuntimeError as exc:  # e.g. out of device memory: the user's choice of device or sizes
        raise RegfwError(f"cannot move the run to {device}: {one_line(exc)}") from None
    optimizer = build_optimizer(config, registry, model.parameters())
    generator = torch.Generator().manual_seed(config.seed + 1)  # the shuffle order
    return RunState(config, device, data, model, loss_fn, optimizer, generator)
