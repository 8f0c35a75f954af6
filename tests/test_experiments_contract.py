"""Contract tests over every registered experiment and component: a new plugin's parts are checked
here without anyone writing a test for them.

Every experiment resolves (``regfw show``) and trains two epochs on the CPU; every optimizer swaps
into a small experiment; every model builds with dataset sizes and maps a batch to the right shape;
every loss gives a finite, differentiable value on the shapes of some task; every dataset's cheap
``dims`` agree with the tensors it builds. Datasets with a ``root`` parameter (torchvision's
MNIST-format datasets) are pointed at tiny IDX files the test writes.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import yaml

from idx import write_idx
from regfw.config import resolve
from regfw.errors import RegfwError
from regfw.plugins import load_plugins
from regfw.runner import execute
from regfw.store import NullTracker

REGISTRY = load_plugins().registry
EXPERIMENTS = REGISTRY.names("experiment")
MODELS = REGISTRY.names("model")
LOSSES = REGISTRY.names("loss")
OPTIMIZERS = REGISTRY.names("optimizer")
DATASETS = REGISTRY.names("dataset")


def tiny_root(tmp_path) -> str:
    """One folder holding tiny IDX files in both of torchvision's MNIST-format layouts."""
    root = tmp_path / "idx"
    for layout in ("MNIST", "FashionMNIST", "KMNIST", "EMNIST"):
        write_idx(root, layout=layout, n_train=64, n_test=32)
    return str(root)


def data_sets(dataset: str, tmp_path) -> list[tuple[str, object]]:
    """--set values that make ``dataset`` buildable here (no download: tiny local files)."""
    params = REGISTRY.get("dataset", dataset).params
    if "path" in params:  # a file-backed dataset (table): a small CSV whose target reads as numbers or classes
        path = tmp_path / "table.csv"
        path.write_text("a,b,y\n" + "".join(f"{i % 7},{i * 0.5},{i % 3}\n" for i in range(48)))
        return [("dataset.path", str(path)), ("dataset.target", "y")]
    if "root" not in params:
        return []
    sets = [("dataset.root", tiny_root(tmp_path))]
    if "download" in params:
        sets.append(("dataset.download", "false"))
    return sets


def run(experiment: str, sets=(), swaps=None):
    plugins = load_plugins()
    config = resolve(plugins.registry, experiment, sets=list(sets), swaps=swaps, flags={"device": "cpu"})
    return config, execute(config, plugins, NullTracker(), run_name="contract")


def finite_curve(history, name):
    points = history.curves.get(name, [])
    return bool(points) and all(math.isfinite(v) for _, v in points)


def test_registry_is_not_empty():
    assert EXPERIMENTS and MODELS and LOSSES and OPTIMIZERS and DATASETS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_resolves_and_shows(experiment, invoke):
    result = invoke("show", experiment)
    assert result.exit_code == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["experiment"] == experiment
    entry = REGISTRY.get("experiment", experiment)
    for part in ("dataset", "model", "loss", "optimizer"):
        assert shown[part]["name"] == entry.parts[part].name
    assert shown["train"]["epochs"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains_two_epochs_on_cpu(experiment, tmp_path):
    dataset = REGISTRY.get("experiment", experiment).parts["dataset"].name
    config, outcome = run(experiment, [("train.epochs", "2"), *data_sets(dataset, tmp_path)])
    assert outcome.status == "FINISHED", outcome.error
    assert outcome.history.epochs_done == 2
    assert [e for e, _ in outcome.history.curves["train_loss"]] == [1, 2]
    assert finite_curve(outcome.history, "train_loss")
    if "accuracy" in config.train["metrics"]:
        assert finite_curve(outcome.history, "train_accuracy")
        assert all(0.0 <= v <= 1.0 for _, v in outcome.history.curves["train_accuracy"])
    if "test_loss" in outcome.history.curves:
        assert finite_curve(outcome.history, "test_loss")
    assert math.isfinite(outcome.summary["final_train_loss"])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_swaps_into_a_small_experiment(optimizer):
    """Each optimizer, with its own defaults, trains quadratic-param: finite loss, parameters move."""
    config, outcome = run("quadratic-param", [("train.epochs", "5")], swaps={"optimizer": optimizer})
    assert config.optimizer.name == optimizer
    assert outcome.status == "FINISHED", outcome.error
    assert finite_curve(outcome.history, "train_loss")
    _, start = run("quadratic-param", [("train.epochs", "1"), ("optimizer.lr", "1e-30")])
    moved = [k for k in ("a", "b", "c") if outcome.learned[k] != pytest.approx(start.learned[k], abs=1e-7)]
    assert moved, f"{optimizer} left a, b, c where they started"


def _model_params(name: str, dims: dict) -> dict:
    entry = REGISTRY.get("model", name)
    params = {k: p.default for k, p in entry.params.items()}
    for key, value in dims.items():
        if key in params and params[key] is None:
            params[key] = value
    return params


@pytest.mark.parametrize("model", MODELS)
def test_every_model_builds_with_dims_and_maps_a_batch(model):
    """1-D in and out works for every model; other sizes give the right shape or a one-line RegfwError."""
    entry = REGISTRY.get("model", model)
    torch.manual_seed(0)
    if "in_features" not in entry.params:  # e.g. a sequence model: sizes and inputs from its own experiment
        _check_model_in_its_experiment(model)
        return
    net = entry.factory(**_model_params(model, {"in_features": 1, "out_features": 1}))
    x = torch.randn(7, 1)
    out = net(x)
    assert out.shape == (7, 1) and torch.isfinite(out).all()
    out.sum().backward()
    assert any(p.grad is not None for p in net.parameters()), "no parameter receives a gradient"
    try:
        wide = entry.factory(**_model_params(model, {"in_features": 5, "out_features": 3}))
    except RegfwError as exc:
        assert "\n" not in str(exc) and model in str(exc)
    else:
        assert wide(torch.randn(7, 5)).shape == (7, 3)


def _check_model_in_its_experiment(model: str) -> None:
    """A model without ``in_features`` takes what its experiment's dataset gives (sizes via dims)."""
    from regfw.build import build_data, build_model

    experiment = next(e for e in REGISTRY.all("experiment") if e.parts["model"].name == model)
    config = resolve(REGISTRY, experiment.name)
    data = build_data(config, REGISTRY)
    net = build_model(config, REGISTRY)
    out = net(data.x_train[:7])
    assert out.shape[0] == 7 and torch.isfinite(out).all()
    out.sum().backward()
    assert any(p.grad is not None for p in net.parameters()), "no parameter receives a gradient"


TASK_SHAPES = {
    "regression": lambda: (torch.randn(8, 1, requires_grad=True), torch.randn(8, 1)),
    "binary": lambda: (torch.randn(8, 1, requires_grad=True), torch.randint(0, 2, (8, 1)).float()),
    "multiclass": lambda: (torch.randn(8, 10, requires_grad=True), torch.randint(0, 10, (8,))),
}


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_is_finite_and_differentiable_on_some_task(loss):
    entry = REGISTRY.get("loss", loss)
    fn = entry.factory(**{k: p.default for k, p in entry.params.items()})
    worked = []
    for task, make in TASK_SHAPES.items():
        torch.manual_seed(0)
        output, target = make()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # e.g. "target size ... will likely lead to incorrect results"
                value = fn(output, target)
        except (RuntimeError, ValueError, IndexError, TypeError, UserWarning):
            continue
        if value.ndim == 0 and torch.isfinite(value):
            value.backward()
            assert torch.isfinite(output.grad).all()
            worked.append(task)
    assert worked, f"loss '{loss}' computed no finite scalar for any of {list(TASK_SHAPES)}"


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_matches_its_declared_dims(dataset, tmp_path):
    entry = REGISTRY.get("dataset", dataset)
    given = {key.split(".", 1)[1]: value for key, value in data_sets(dataset, tmp_path)}
    params = {k: p.default for k, p in entry.params.items()} | given
    params = {k: entry.params[k].coerce(v, k) for k, v in params.items()}
    data = entry.factory(generator=torch.Generator().manual_seed(0), **params)
    assert data.x_train.ndim >= 2 and len(data.x_train) == len(data.y_train) > 0  # (n, features) or (n, length, channels)
    assert data.x_train.is_floating_point() and torch.isfinite(data.x_train).all()
    if data.task == "multiclass":
        assert data.y_train.dtype == torch.long and data.y_train.ndim == 1
    else:
        assert data.y_train.is_floating_point() and data.y_train.ndim == 2
    if data.task == "binary":
        assert set(data.y_train.unique().tolist()) <= {0.0, 1.0}
    if data.has_test:
        assert data.x_test.shape[1:] == data.x_train.shape[1:] and data.y_test.dtype == data.y_train.dtype
    if entry.dims is not None:
        dims = entry.dims(params)
        assert dims["in_features"] == data.x_train[0].numel()  # what a flattening model such as mlp takes
        if data.task == "multiclass":
            assert int(data.y_train.max()) < dims["out_features"]
        else:
            assert dims["out_features"] == data.y_train.shape[1]
