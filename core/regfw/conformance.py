"""Conformance checks for the components a plugin registers: what ``regfw check`` runs.

Every component is built with its declared defaults and trained for two steps in a *context*:
an experiment of the same plugin that uses it (so a model meets the data it was written for),
or else a small synthetic problem built here from plain torch (so a broken neighbour cannot fail
it). Then, per component:

- it builds with its defaults, and a dataset's tensors are finite;
- one training step gives a finite scalar loss and leaves the parameters finite;
- the same seed gives the same losses, parameters and data, bit for bit (on the same device);
- parameters, buffers, data and optimizer state land on the requested device;
- the model's (and an optimizer's) ``state_dict`` survives ``torch.save`` / ``torch.load(weights_only=True)``
  and a fresh instance loaded from it behaves identically;
- the optional model methods keep their contract (``formula_grad`` fills finite gradients, and
  matches autograd when an experiment trains with ``grad: formula``; ``feature_basis`` gives one row
  per sample; ``learned_parameters`` gives numbers).

A dataset that raises :class:`~regfw.errors.RegfwError` (data not downloaded, say) makes the
components that need it *skipped*, with its message: a missing file is the user's to fix, not a bug.
torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import copy
import io
import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable

from regfw.errors import RegfwError
from regfw.registry import KINDS, Entry

SAMPLE_ROWS = 256  # training rows used per check: enough for mini-batches, fast on any dataset
SYNTHETIC_ROWS = 64
STEPS = 2
DEFAULT_IN = 3  # in_features given to a model that declares it without a default and meets no dataset
ORDER = {kind: i for i, kind in enumerate(("experiment", "dataset", "model", "loss", "optimizer"))}


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


# -- building ------------------------------------------------------------------------------------

def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _call(check: str, what: str, fn: Callable, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (Failed, Skipped):
        raise
    except Exception as exc:  # noqa: BLE001 - any exception is the finding
        raise Failed(check, f"{what} raised {_one_line(exc)}") from exc


def _seed(seed: int) -> None:
    from regfw.runner import seed_everything

    seed_everything(seed)


def _defaults(entry: Entry) -> dict:
    return {k: p.default for k, p in entry.params.items()}


_unavailable: dict[tuple, str] = {}  # (dataset, params) -> why it cannot be built here


def _build_data(entry: Entry, params: dict, seed: int):
    import torch

    from regfw.data import Data

    key = (entry.plugin, entry.name, repr(sorted(params.items())))
    if key in _unavailable:  # do not retry a missing download for every component that needs it
        raise Skipped(_unavailable[key])
    _seed(seed)
    try:
        data = entry.factory(generator=torch.Generator().manual_seed(seed), **params)
    except RegfwError as exc:
        reason = " ".join(str(exc).split())
        if not reason.startswith(f"dataset '{entry.name}'"):
            reason = f"dataset '{entry.name}': {reason}"
        _unavailable[key] = f"cannot be built here: {reason if len(reason) <= 240 else reason[:237] + '...'}"
        raise Skipped(_unavailable[key]) from exc
    except Exception as exc:  # noqa: BLE001
        raise Failed("build", f"dataset '{entry.name}' raised {_one_line(exc)}") from exc
    if not isinstance(data, Data):
        raise Failed("build", f"dataset '{entry.name}' returned {type(data).__name__}, not regfw.data.Data")
    return data


def _sample(data, rows: int = SAMPLE_ROWS):
    cut = lambda t: None if t is None else t[:rows]  # noqa: E731
    return replace(data, x_train=cut(data.x_train), y_train=cut(data.y_train),
                   x_test=cut(data.x_test), y_test=cut(data.y_test))


def _synthetic(in_shape: tuple, task: str, out_width: int, seed: int, rows: int = SYNTHETIC_ROWS):
    """Plain data for a component met without its own dataset: x ~ N(0, 1), targets per task."""
    import torch

    from regfw.data import Data

    g = torch.Generator().manual_seed(seed)
    x = torch.randn((rows, *in_shape), generator=g)
    if task == "multiclass":
        y = torch.randint(0, max(out_width, 2), (rows,), generator=g)
    elif task == "binary":
        y = torch.randint(0, 2, (rows, out_width), generator=g).float()
    else:
        y = torch.randn((rows, out_width), generator=g)
    return Data(x, y, task=task)


class _Probe:
    """The reference model used where the component under test is not a model."""

    @staticmethod
    def model(in_features: int, out_features: int, seed: int):
        import torch.nn as nn

        _seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out_features))

    @staticmethod
    def loss(task: str):
        import torch.nn as nn

        return {"regression": nn.MSELoss, "binary": nn.BCEWithLogitsLoss, "multiclass": nn.CrossEntropyLoss}[task]()

    @staticmethod
    def optimizer(parameters):
        import torch

        return torch.optim.SGD(parameters, lr=0.01)


def _widths(data) -> tuple[int, int]:
    """(flattened input width, output width) a reference model needs for ``data``."""
    x, y = data.x_train, data.y_train
    in_width = int(x[0].numel()) if x.ndim > 1 else 1
    if data.task == "multiclass":
        out = int(y.max().item()) + 1 if len(y) else 2
        return in_width, max(out, 2)
    return in_width, int(y[0].numel()) if y.ndim > 1 else 1


@dataclass
class Setup:
    """Everything one trial builds; each maker is seeded so two trials can be compared."""

    make_data: Callable[[int], object]
    make_model: Callable[[int], object]
    make_loss: Callable[[], object]
    make_optimizer: Callable[[object], object]
    train: dict
    context: str  # what the component was checked with, for the report


def _train_settings(base: dict | None = None) -> dict:
    settings = {"epochs": STEPS, "batch_size": "full", "shuffle": True, "log_every": 1, "metrics": [], "grad": "autograd"}
    settings.update(base or {})
    settings.update(epochs=STEPS, log_every=1, metrics=[])
    return settings


# -- contexts ------------------------------------------------------------------------------------

class Checker:
    """Checks components of one registry on one device."""

    def __init__(self, plugins, device: str = "cpu", seed: int = 0):
        from regfw.device import resolve_device

        self.plugins = plugins
        self.registry = plugins.registry
        self.device = resolve_device(device)
        self.seed = seed
        self._built: dict = {}  # datasets built once per check: big ones cost seconds
        self.fresh = False  # set while a dataset's own determinism is checked: build it again

    def _data(self, entry: Entry, params: dict, seed: int):
        key = (entry.plugin, entry.name, repr(sorted(params.items())), seed)
        if self.fresh or key not in self._built:
            self._built[key] = _sample(_build_data(entry, params, seed))
        return self._built[key]

    # The experiment of the same plugin that uses a component, if any: its context is the real one.
    def _home_experiment(self, entry: Entry) -> Entry | None:
        for exp in self.registry.all("experiment"):
            if exp.plugin == entry.plugin and exp.parts[entry.kind].name == entry.name:
                return exp
        return None

    def _experiment_config(self, exp: Entry):
        from regfw.config import resolve

        try:
            return resolve(self.registry, exp.name, flags={"device": "cpu"})
        except RegfwError as exc:
            raise Failed("build", f"experiment '{exp.name}' does not resolve: {exc}") from exc

    def _part_maker(self, part: str, name: str, params: dict):
        entry = self.registry.get(part, name)
        if part == "dataset":
            return lambda seed: self._data(entry, params, seed)
        if part == "model":
            def make_model(seed):
                _seed(seed)
                return _call("build", f"model '{name}'", entry.factory, **params)
            return make_model
        if part == "loss":
            return lambda: _call("build", f"loss '{name}'", entry.factory, **params)
        return lambda parameters: _call("build", f"optimizer '{name}'", entry.factory, parameters, **params)

    def setup_from_experiment(self, exp: Entry, swap: Entry | None = None) -> Setup:
        """The experiment's composition; ``swap`` (one of its own parts) goes in with its defaults."""
        config = self._experiment_config(exp)
        params = {part: dict(getattr(config, part).params) for part in ("dataset", "model", "loss", "optimizer")}
        if swap is not None:
            params[swap.kind] = _defaults(swap)
            if swap.kind == "model":
                dims_from = self.registry.get("dataset", config.dataset.name)
                dims = dims_from.dims(params["dataset"]) if dims_from.dims else {}
                for key in ("in_features", "out_features"):
                    if params["model"].get(key, 0) is None and key in (dims or {}):
                        params["model"][key] = dims[key]
        makers = {part: self._part_maker(part, getattr(config, part).name, params[part])
                  for part in ("dataset", "model", "loss", "optimizer")}
        return Setup(makers["dataset"], makers["model"], makers["loss"], makers["optimizer"],
                     _train_settings(config.train), f"experiment '{exp.name}'")

    def setup_for(self, entry: Entry) -> Setup:
        if entry.kind == "experiment":
            return self.setup_from_experiment(entry)
        home = self._home_experiment(entry)
        dims = None
        if home is not None:
            setup = self.setup_from_experiment(home, swap=entry)
            if entry.kind == "dataset":
                return setup
            try:
                setup.make_data(self.seed)
                return setup
            except Skipped:
                # Its dataset cannot be built here (say, files not downloaded): check the component
                # on synthetic data of the dataset's declared sizes instead.
                config = self._experiment_config(home)
                source = self.registry.get("dataset", config.dataset.name)
                dims = source.dims(config.dataset.params) if source.dims else None
        if entry.kind == "model":
            return self._synthetic_model(entry, dims or {})
        return getattr(self, f"_synthetic_{entry.kind}")(entry)

    def _synthetic_dataset(self, entry: Entry) -> Setup:
        params = _defaults(entry)
        probe_data = self._data(entry, params, self.seed)
        in_width, out_width = _widths(probe_data)
        task = probe_data.task
        return Setup(lambda seed: self._data(entry, params, seed),
                     lambda seed: _Probe.model(in_width, out_width, seed),
                     lambda: _Probe.loss(task), _Probe.optimizer, _train_settings(),
                     f"a linear probe model and a {task} loss")

    def _synthetic_model(self, entry: Entry, dims: dict) -> Setup:
        import torch

        params = _defaults(entry)
        for key, fallback in (("in_features", DEFAULT_IN), ("out_features", 1)):
            if key in params and params[key] is None:
                params[key] = dims.get(key) or fallback
        make_model = self._part_maker("model", entry.name, params)
        model = make_model(self.seed)
        # Without an in_features parameter, the first layer that declares one says the width.
        first = next((m for m in model.modules() if isinstance(getattr(m, "in_features", None), int)), None)
        in_width = params.get("in_features") or (first.in_features if first is not None else 1)
        # The output width is whatever the model gives: find it with one forward pass.
        with torch.no_grad():
            out = _call("forward", f"model '{entry.name}' on input [{SYNTHETIC_ROWS}, {in_width}]",
                        model, torch.zeros(SYNTHETIC_ROWS, in_width))
        out_width = int(out[0].numel()) if out.ndim > 1 else 1

        def make_data(seed):
            data = _synthetic((in_width,), "regression", out_width, seed)
            return data if out.ndim > 1 else replace(data, y_train=data.y_train[:, 0])

        return Setup(make_data, make_model, lambda: _Probe.loss("regression"), _Probe.optimizer,
                     _train_settings(), f"synthetic regression [{SYNTHETIC_ROWS}, {in_width}] -> {out_width}")

    def _synthetic_loss(self, entry: Entry) -> Setup:
        import torch

        make_loss = self._part_maker("loss", entry.name, _defaults(entry))
        loss_fn = make_loss()
        tried = []
        for task, out_width in (("regression", 1), ("binary", 1), ("multiclass", 3)):
            data = _synthetic((DEFAULT_IN,), task, out_width, self.seed)
            model = _Probe.model(DEFAULT_IN, out_width, self.seed)
            try:
                out = model(data.x_train)
                with warnings.catch_warnings():  # e.g. mse's broadcasting warning on class targets
                    warnings.simplefilter("ignore")
                    value = loss_fn(out, data.y_train)
                ok = torch.is_tensor(value) and value.ndim == 0 and bool(torch.isfinite(value))
                # A loss that ignores the prediction (cross-entropy over one class) teaches nothing.
                ok = ok and bool(torch.autograd.grad(value, out)[0].abs().sum() > 0)
            except Exception as exc:  # noqa: BLE001 - try the next kind of target
                tried.append(f"{task}: {_one_line(exc)}")
                continue
            if ok:
                return Setup(lambda seed, t=task, w=out_width: _synthetic((DEFAULT_IN,), t, w, seed),
                             lambda seed, w=out_width: _Probe.model(DEFAULT_IN, w, seed),
                             make_loss, _Probe.optimizer, _train_settings(), f"synthetic {task} targets")
            if not torch.is_tensor(value) or value.ndim:
                tried.append(f"{task}: gave {list(value.shape) if torch.is_tensor(value) else type(value).__name__}")
            else:
                tried.append(f"{task}: gave {float(value.detach())} with no gradient")
        raise Failed("finite loss", "no regression, binary or multiclass target gives a finite scalar ("
                     + "; ".join(tried) + ")")

    def _synthetic_optimizer(self, entry: Entry) -> Setup:
        return Setup(lambda seed: _synthetic((DEFAULT_IN,), "regression", 1, seed),
                     lambda seed: _Probe.model(DEFAULT_IN, 1, seed),
                     lambda: _Probe.loss("regression"),
                     self._part_maker("optimizer", entry.name, _defaults(entry)),
                     _train_settings(), "a linear probe model on synthetic regression data")

    # -- one trial -------------------------------------------------------------------------------
    def trial(self, setup: Setup) -> dict:
        """Build everything with ``self.seed``, move it to the device and train two steps."""
        import torch

        from regfw.engine import Diverged, History, Recorder, train

        data = setup.make_data(self.seed)
        if not _finite_data(data):
            raise Failed("build", "the dataset holds NaN or infinite values")
        model = setup.make_model(self.seed)
        if not isinstance(model, torch.nn.Module):
            raise Failed("build", f"the model is a {type(model).__name__}, not a torch.nn.Module")
        loss_fn = setup.make_loss()
        if not callable(loss_fn):
            raise Failed("build", f"the loss is a {type(loss_fn).__name__}, not callable")
        _call("device", "model.to(device)", model.to, self.device)
        data = data.to(self.device)
        optimizer = setup.make_optimizer(model.parameters())
        for method in ("step", "zero_grad", "state_dict", "load_state_dict"):
            if not callable(getattr(optimizer, method, None)):
                raise Failed("build", f"the optimizer ({type(optimizer).__name__}) has no {method}()")

        x, y = data.x_train[:2], data.y_train[:2]
        with torch.no_grad():
            value = _call("finite loss", "loss on the model's output", loss_fn, _call("forward", "model forward", model, x), y)
        if not torch.is_tensor(value) or value.ndim != 0:
            shape = list(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise Failed("finite loss", f"the loss returns {shape}, not a scalar tensor")

        history = History()
        recorder = Recorder(history, lambda rows: None)
        try:
            train(model, data, loss_fn, optimizer, setup.train, generator=torch.Generator().manual_seed(self.seed + 1),
                  recorder=recorder, history=history)
        except Diverged as exc:
            raise Failed("finite loss", f"a training step gave a non-finite {exc.name} ({exc.value})") from exc
        except (Failed, Skipped):
            raise
        except Exception as exc:  # noqa: BLE001
            raise Failed("finite loss", f"a training step raised {_one_line(exc)}") from exc
        for name, p in model.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise Failed("finite loss", f"parameter '{name}' is not finite after one step")
        return {"data": data, "model": model, "loss": loss_fn, "optimizer": optimizer, "history": history}


def _finite_data(data) -> bool:
    import torch

    tensors = [data.x_train, data.y_train] + ([data.x_test, data.y_test] if data.has_test else [])
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def _same_device(tensor, device) -> bool:
    return tensor.device.type == device.type and (device.index is None or tensor.device.index == device.index)


def _save_load(state):
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def check_component(checker: Checker, entry: Entry) -> ComponentResult:
    """Run every check on one component; the first failing check ends it."""
    result = ComponentResult(entry.kind, entry.name, entry.plugin, "ok")
    try:
        _run_checks(checker, entry, result)
    except Skipped as exc:
        result.status, result.reason = "skip", str(exc)
    except Failed as exc:
        result.status, result.reason = "fail", str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug anywhere is reported on the component's line
        result.status, result.reason = "fail", f"unexpected {_one_line(exc)}"
    return result


def _run_checks(checker: Checker, entry: Entry, result: ComponentResult) -> None:
    import torch

    passed = result.passed
    setup = checker.setup_for(entry)
    result.context = setup.context
    first = checker.trial(setup)
    passed.append("builds")
    losses = [v for _, v in first["history"].curves["train_loss"]]
    passed.append(f"finite loss {losses[0]:.4g} -> {losses[-1]:.4g}")

    checker.fresh = entry.kind == "dataset"
    try:
        second = checker.trial(setup)
    finally:
        checker.fresh = False
    again = [v for _, v in second["history"].curves["train_loss"]]
    if again != losses:
        raise Failed("deterministic", f"the same seed gave losses {losses} then {again}")
    for (name, a), (_, b) in zip(first["model"].state_dict().items(), second["model"].state_dict().items()):
        if torch.is_tensor(a) and not (torch.is_tensor(b) and torch.equal(a, b)):
            raise Failed("deterministic", f"the same seed gave different values of '{name}' after training")
    for attr in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(first["data"], attr), getattr(second["data"], attr)
        if a is not None and not torch.equal(a, b):
            raise Failed("deterministic", f"the same seed gave different {attr}")
    passed.append("deterministic")

    _check_device(checker.device, first)
    passed.append(f"on {checker.device}")

    model = first["model"]
    if entry.kind in ("model", "experiment"):
        _check_model_state(checker, setup, first)
        passed.append("state_dict round-trips")
        passed.extend(_check_model_methods(model, first["data"], first["loss"], setup))
    elif entry.kind == "optimizer":
        _check_optimizer_state(setup, first)
        passed.append("state_dict round-trips")
    elif entry.kind == "loss" and isinstance(first["loss"], torch.nn.Module) and first["loss"].state_dict():
        _check_loss_state(setup, first)
        passed.append("state_dict round-trips")


def _check_device(device, first: dict) -> None:
    import torch

    model, data, optimizer, loss_fn = first["model"], first["data"], first["optimizer"], first["loss"]
    named = list(model.named_parameters()) + list(model.named_buffers())
    if isinstance(loss_fn, torch.nn.Module):
        named += [(f"loss.{n}", t) for n, t in list(loss_fn.named_parameters()) + list(loss_fn.named_buffers())]
    for name, tensor in named:
        if not _same_device(tensor, device):
            raise Failed("device", f"'{name}' is on {tensor.device}, not {device}")
    for attr in ("x_train", "y_train", "x_test", "y_test"):
        tensor = getattr(data, attr)
        if tensor is not None and not _same_device(tensor, device):
            raise Failed("device", f"{attr} is on {tensor.device}, not {device}")
    for state in optimizer.state.values():
        for key, tensor in state.items():
            if torch.is_tensor(tensor) and tensor.ndim > 0 and not _same_device(tensor, device):
                raise Failed("device", f"optimizer state '{key}' is on {tensor.device}, not {device}")


def _check_model_state(checker: Checker, setup: Setup, first: dict) -> None:
    import torch

    model, data = first["model"], first["data"]
    try:
        state = _save_load(model.state_dict())
    except Exception as exc:  # noqa: BLE001
        raise Failed("state_dict", f"the model's state_dict does not save/load with weights_only: {_one_line(exc)}") from exc
    fresh = setup.make_model(checker.seed + 1)
    fresh.to(checker.device)
    try:
        fresh.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001
        raise Failed("state_dict", f"a fresh model does not load the saved state_dict: {_one_line(exc)}") from exc
    model.eval()
    fresh.eval()
    with torch.no_grad():
        x = data.x_train[:8]
        if not torch.allclose(model(x), fresh(x), rtol=1e-6, atol=1e-7, equal_nan=True):
            raise Failed("state_dict", "a fresh model loaded from the state_dict gives different outputs")


def _check_optimizer_state(setup: Setup, first: dict) -> None:
    """Reload the optimizer's state into a fresh one over a copy of the model: the next steps agree."""
    import torch

    model, optimizer, data, loss_fn = first["model"], first["optimizer"], first["data"], first["loss"]
    try:
        opt_state = _save_load(optimizer.state_dict())
    except Exception as exc:  # noqa: BLE001
        raise Failed("state_dict", f"the optimizer's state_dict does not save/load with weights_only: {_one_line(exc)}") from exc
    twin = copy.deepcopy(model)
    twin_opt = setup.make_optimizer(twin.parameters())
    try:
        twin_opt.load_state_dict(opt_state)
    except Exception as exc:  # noqa: BLE001
        raise Failed("state_dict", f"a fresh optimizer does not load the saved state: {_one_line(exc)}") from exc
    for net, opt in ((model, optimizer), (twin, twin_opt)):
        net.train()
        for _ in range(2):
            opt.zero_grad()
            loss_fn(net(data.x_train), data.y_train).backward()
            opt.step()
    for (name, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items()):
        if torch.is_tensor(a) and not torch.allclose(a, b, rtol=1e-6, atol=1e-7):
            raise Failed("state_dict", f"after reloading its state the optimizer moves '{name}' differently")


def _check_loss_state(setup: Setup, first: dict) -> None:
    import torch

    loss_fn, data, model = first["loss"], first["data"], first["model"]
    fresh = setup.make_loss()
    try:
        fresh.load_state_dict(_save_load(loss_fn.state_dict()))
        fresh.to(data.x_train.device)
    except Exception as exc:  # noqa: BLE001
        raise Failed("state_dict", f"the loss's state_dict does not round-trip: {_one_line(exc)}") from exc
    with torch.no_grad():
        out = model(data.x_train)
        if not torch.allclose(loss_fn(out, data.y_train), fresh(out, data.y_train)):
            raise Failed("state_dict", "a fresh loss loaded from the state_dict gives a different value")


def _check_model_methods(model, data, loss_fn, setup: Setup) -> list[str]:
    """The optional methods: formula_grad, feature_basis, learned_parameters."""
    import torch

    passed = []
    x, y = data.x_train, data.y_train
    if callable(getattr(model, "formula_grad", None)):
        model.train()
        for p in model.parameters():
            p.grad = None
        expected = None
        if setup.train.get("grad") == "formula":
            out = loss_fn(model(x), y)
            expected = [g.detach().clone() for g in torch.autograd.grad(out, list(model.parameters()), allow_unused=True)
                        if g is not None]
            for p in model.parameters():
                p.grad = None
        with torch.no_grad():
            _call("formula_grad", "formula_grad(x, y)", model.formula_grad, x, y)
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        if any(g is None or not bool(torch.isfinite(g).all()) for g in grads):
            raise Failed("formula_grad", "formula_grad(x, y) left a parameter without a finite .grad")
        if expected is not None:
            if len(expected) != len(grads) or not all(torch.allclose(a, b, rtol=1e-4, atol=1e-6)
                                                      for a, b in zip(expected, grads)):
                raise Failed("formula_grad", "formula_grad(x, y) does not match autograd on the experiment's loss")
            passed.append("formula_grad = autograd")
        else:
            passed.append("formula_grad")
    if callable(getattr(model, "feature_basis", None)) and data.task == "regression":
        with torch.no_grad():
            basis = _call("feature_basis", "feature_basis(x)", model.feature_basis, x)
        if not torch.is_tensor(basis) or basis.ndim != 2 or len(basis) != len(x):
            shape = list(basis.shape) if torch.is_tensor(basis) else type(basis).__name__
            raise Failed("feature_basis", f"feature_basis(x) must give a [{len(x)}, k] matrix, got {shape}")
        passed.append("feature_basis")
    if callable(getattr(model, "learned_parameters", None)):
        values = _call("learned_parameters", "learned_parameters()", model.learned_parameters)
        try:
            numbers = {str(k): float(v) for k, v in dict(values).items()}
        except (TypeError, ValueError) as exc:
            raise Failed("learned_parameters", f"learned_parameters() must map names to numbers: {_one_line(exc)}") from exc
        if not all(math.isfinite(v) for v in numbers.values()):
            raise Failed("learned_parameters", "learned_parameters() gave a non-finite value")
        passed.append("learned_parameters")
    return passed


def check_registered(plugins, plugin: str, *, device: str = "cpu", seed: int = 0) -> CheckReport:
    """Check every component that ``plugin`` registered in ``plugins`` (a loaded :class:`Plugins`)."""
    report = CheckReport(plugin)
    info = plugins.info.get(plugin)
    if info is not None and info.status != "ok":
        report.error = f"{info.status}: {info.error}" if info.error else info.status
        return report
    entries = [e for kind in KINDS for e in plugins.registry.all(kind) if e.plugin == plugin]
    if not entries:
        report.error = "registers no components"
        return report
    checker = Checker(plugins, device=device, seed=seed)
    _unavailable.clear()  # data may have appeared since the last check
    for entry in sorted(entries, key=lambda e: (ORDER[e.kind], e.name)):
        report.components.append(check_component(checker, entry))
    return report
