"""The checks run on each component, in order, and :func:`check_registered`, which runs them on a plugin.

Per component, after it builds with its defaults and two training steps give a finite loss:

- the same seed gives the same losses, parameters and data, bit for bit (on the same device);
- parameters, buffers, data and optimizer state land on the requested device;
- the model's (and an optimizer's, and a stateful loss's) ``state_dict`` survives ``torch.save`` /
  ``torch.load(weights_only=True)`` and a fresh instance loaded from it behaves identically;
- the optional model methods keep their contract (``formula_grad`` fills finite gradients, and
  matches autograd when an experiment trains with ``grad: formula``; ``feature_basis`` gives one row
  per sample; ``learned_parameters`` gives numbers).

The first failing check ends that component's line; the plugin's other components are still checked.
"""

from __future__ import annotations

import copy
import io
import math

from regfw.conformance.checker import Checker
from regfw.conformance.contexts import Setup, guarded
from regfw.conformance.results import CheckReport, ComponentResult, Failed, Skipped
from regfw.errors import one_line
from regfw.registry import KINDS, Entry

ORDER = {kind: i for i, kind in enumerate(("experiment", "dataset", "model", "loss", "optimizer"))}


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
    checker = Checker(plugins, device=device, seed=seed)  # a new one: data may have appeared since the last check
    for entry in sorted(entries, key=lambda e: (ORDER[e.kind], e.name)):
        report.components.append(check_component(checker, entry))
    return report


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
        result.status, result.reason = "fail", f"unexpected {one_line(exc)}"
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

    if entry.kind == "dataset":  # a dataset's own determinism: build it again, not from the cache
        checker.forget_data(entry)
    second = checker.trial(setup)
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

    if entry.kind in ("model", "experiment"):
        _check_model_state(checker, setup, first)
        passed.append("state_dict round-trips")
        passed.extend(_check_model_methods(first["model"], first["data"], first["loss"], setup))
    elif entry.kind == "optimizer":
        _check_optimizer_state(setup, first)
        passed.append("state_dict round-trips")
    elif entry.kind == "loss" and isinstance(first["loss"], torch.nn.Module) and first["loss"].state_dict():
        _check_loss_state(setup, first)
        passed.append("state_dict round-trips")


def _same_device(tensor, device) -> bool:
    return tensor.device.type == device.type and (device.index is None or tensor.device.index == device.index)


def _save_load(state):
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


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
        raise Failed("state_dict", f"the model's state_dict does not save/load with weights_only: {one_line(exc)}") from exc
    fresh = setup.make_model(checker.seed + 1)
    fresh.to(checker.device)
    try:
        fresh.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001
        raise Failed("state_dict", f"a fresh model does not load the saved state_dict: {one_line(exc)}") from exc
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
        raise Failed("state_dict", f"the optimizer's state_dict does not save/load with weights_only: {one_line(exc)}") from exc
    twin = copy.deepcopy(model)
    twin_opt = setup.make_optimizer(twin.parameters())
    try:
        twin_opt.load_state_dict(opt_state)
    except Exception as exc:  # noqa: BLE001
        raise Failed("state_dict", f"a fresh optimizer does not load the saved state: {one_line(exc)}") from exc
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
        raise Failed("state_dict", f"the loss's state_dict does not round-trip: {one_line(exc)}") from exc
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
            guarded("formula_grad", "formula_grad(x, y)", model.formula_grad, x, y)
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
            basis = guarded("feature_basis", "feature_basis(x)", model.feature_basis, x)
        if not torch.is_tensor(basis) or basis.ndim != 2 or len(basis) != len(x):
            shape = list(basis.shape) if torch.is_tensor(basis) else type(basis).__name__
            raise Failed("feature_basis", f"feature_basis(x) must give a [{len(x)}, k] matrix, got {shape}")
        passed.append("feature_basis")
    if callable(getattr(model, "learned_parameters", None)):
        with torch.no_grad():  # as a run calls it (regfw.results.learned_parameters)
            values = guarded("learned_parameters", "learned_parameters()", model.learned_parameters)
            try:
                numbers = {str(k): float(v) for k, v in dict(values).items()}
            except (TypeError, ValueError) as exc:
                raise Failed("learned_parameters",
                             f"learned_parameters() must map names to numbers: {one_line(exc)}") from exc
        if not all(math.isfinite(v) for v in numbers.values()):
            raise Failed("learned_parameters", "learned_parameters() gave a non-finite value")
        passed.append("learned_parameters")
    return passed
