"""The six document experiments (quadratic-param, quadratic-linear, mlp-regression, binary, mnist,
manual-gd): each learns in a few CPU epochs, logs what its document prints and plots, and the
mnist loader and manual-gd's formula gradient do what they claim. No figure from a document is
hard-coded: the checks are that losses fall and parameters move toward the truth."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from idx import FILES, write_idx
from regfw.config import resolve
from regfw.plugins import load_plugins
from regfw.runner import execute
from regfw.store import MlflowTracker, NullTracker
from conftest import metrics_of
from regfw.store.keys import stored


def run(experiment, *sets, swaps=None, tracker=None):
    plugins = load_plugins()
    config = resolve(plugins.registry, experiment, sets=[tuple(s.split("=", 1)) for s in sets], swaps=swaps,
                     flags={"device": "cpu"})
    outcome = execute(config, plugins, tracker or NullTracker(), run_name="test")
    assert outcome.status == "FINISHED", outcome.error
    return config, outcome


def curve(outcome, name):
    return [v for _, v in outcome.history.curves[name]]


def lstsq_quadratic(x, y):
    design = torch.cat([x * x, x, torch.ones_like(x)], 1).double()
    return torch.linalg.lstsq(design, y.double()).solution.flatten()


def build_data(name, **params):
    entry = load_plugins().registry.get("dataset", name)
    values = {k: p.default for k, p in entry.params.items()} | params
    return entry.factory(generator=torch.Generator().manual_seed(0), **values)


# --- quadratic-param / quadratic-linear --------------------------------------------------------

def test_quadratic_data_is_the_documented_parabola():
    data = build_data("quadratic-1d")
    x = data.x_train.flatten()
    assert data.x_train.shape == (100, 1) and x[0] == -2 and x[-1] == 12
    noise = data.y_train.flatten() - (x - 4) * (x - 8)
    assert abs(float(noise.mean())) < 0.3 and 0.7 < float(noise.std()) < 1.3


def test_quadratic_param_recipe_moves_a_b_c_toward_the_least_squares_fit():
    config, start = run("quadratic-param", "train.epochs=1", "optimizer.lr=1e-30")
    config, outcome = run("quadratic-param", "train.epochs=3000")
    assert config.optimizer.params["lr"] == 2e-5 and config.train["batch_size"] == "full"
    data = build_data("quadratic-1d")
    best = lstsq_quadratic(data.x_train, data.y_train)
    dist = lambda learned: sum((learned[k] - float(v)) ** 2 for k, v in zip("abc", best)) ** 0.5  # noqa: E731
    assert dist(outcome.learned) < dist(start.learned)
    losses = curve(outcome, "train_loss")
    assert losses[-1] < losses[0] / 10
    # regfw's optimum is the lstsq fit of a*x^2+b*x+c on the same data, computed here independently
    design = torch.cat([data.x_train**2, data.x_train, torch.ones_like(data.x_train)], 1).double()
    optimum = float(((design @ best.unsqueeze(1) - data.y_train.double()) ** 2).mean())
    assert outcome.summary["optimum_loss"] == pytest.approx(optimum, rel=1e-6)
    assert outcome.summary["excess_loss"] == pytest.approx(losses[-1] - optimum, rel=1e-6)
    assert outcome.summary["excess_loss"] > 0


@pytest.mark.slow
def test_quadratic_linear_recipe_learns_and_reports_the_expansion():
    _, outcome = run("quadratic-linear", "train.epochs=8000")  # a plateau, then the descent
    losses = curve(outcome, "train_loss")
    assert losses[-1] < losses[0] / 20
    learned = outcome.learned
    assert {"w1", "b1", "w2", "b2", "a", "b", "c"} <= set(learned)
    assert learned["a"] == pytest.approx(learned["w1"] * learned["w2"])
    assert learned["b"] == pytest.approx(learned["w1"] * learned["b2"] + learned["w2"] * learned["b1"])
    assert learned["c"] == pytest.approx(learned["b1"] * learned["b2"])
    assert 0 < outcome.summary["excess_loss"] < losses[0] - outcome.summary["optimum_loss"]


def test_quadratic_models_refuse_a_wide_dataset_in_one_line(invoke):
    result = invoke("run", "mlp-regression", "--model", "quadratic", "--no-track", "--epochs", "1")
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0 and "one-dimensional" in result.stderr


# --- mlp-regression ------------------------------------------------------------------------------

def test_mlp_regression_data_follows_the_recipe():
    data = build_data("linear-features", n_samples=3000, n_train=2100)
    assert data.x_train.shape == (2100, 500) and data.x_test.shape == (900, 500)
    residual = data.y_train - (data.x_train @ torch.full((500, 1), 0.0056) + 0.028)
    assert float(residual.std()) == pytest.approx(0.01, rel=0.1)


def test_mlp_regression_recipe_lowers_train_and_test_loss():
    config, outcome = run("mlp-regression", "train.epochs=6", "dataset.n_samples=4000", "dataset.n_train=2800")
    assert config.model.params["hidden"] == [256] and config.model.params["init_std"] == 0.01
    assert config.optimizer.params["lr"] == pytest.approx(0.01 / 50) and config.train["batch_size"] == 50
    train, test = curve(outcome, "train_loss"), curve(outcome, "test_loss")
    assert len(train) == len(test) == 6
    assert train[-1] < train[0] and test[-1] < test[0]


def test_mlp_regression_with_adam_approaches_the_noise_floor():
    _, outcome = run("mlp-regression", "train.epochs=8", "dataset.n_samples=4000", "dataset.n_train=2800",
                     swaps={"optimizer": "adam"})
    data = build_data("linear-features", n_samples=4000, n_train=2800)
    test = curve(outcome, "test_loss")
    assert test[-1] < test[0] and test[-1] < 0.1 * float(data.y_test.var())


# --- binary --------------------------------------------------------------------------------------

def test_binary_classes_use_their_own_samples():
    data = build_data("two-gaussians", n_per_class=600, n_train_per_class=400)
    assert data.task == "binary" and data.y_train.shape == (800, 1) and data.y_train.dtype == torch.float32
    ones, zeros = data.x_train[data.y_train[:, 0] == 1], data.x_train[data.y_train[:, 0] == 0]
    assert float(ones.mean()) == pytest.approx(2.0, abs=0.05) and float(zeros.mean()) == pytest.approx(-2.0, abs=0.05)
    assert len(data.x_test) == 400 and float(data.y_test.mean()) == 0.5


def test_binary_recipe_separates_the_classes():
    _, outcome = run("binary", "train.epochs=3", "dataset.n_per_class=2000", "dataset.n_train_per_class=1400")
    losses = curve(outcome, "train_loss")
    assert losses[-1] < losses[0]
    assert len(curve(outcome, "test_accuracy")) == len(curve(outcome, "train_accuracy")) == 3
    assert curve(outcome, "test_accuracy")[-1] > 0.9
    assert curve(outcome, "test_loss")[-1] < curve(outcome, "test_loss")[0]


# --- mnist / fashion-mnist -----------------------------------------------------------------------

@pytest.fixture
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "regfw-data"
    monkeypatch.setenv("REGFW_DATA", str(home))
    return home


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files_through_torchvision(tmp_path, data_home, monkeypatch, gz):
    import torchvision.datasets.mnist as tv_mnist

    def no_pil(*args, **kwargs):
        raise AssertionError("an image went through PIL")

    monkeypatch.setattr(tv_mnist, "_Image_fromarray", no_pil)
    root = write_idx(tmp_path / "files", n_train=50, n_test=20, gz=gz)
    data = build_data("mnist", root=str(root))
    assert data.task == "multiclass"
    assert data.x_train.shape == (50, 784) and data.x_test.shape == (20, 784)
    assert data.x_train.dtype == torch.float32 and 0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1
    assert data.y_train.dtype == torch.long
    reference = tv_mnist.MNIST(str(root), train=True)  # the same files, read by torchvision alone
    assert torch.equal(data.y_train, reference.targets)
    assert torch.allclose(data.x_train[3], reference.data[3].flatten().float() / 255)


def test_mnist_flat_folder_is_prepared_once_without_download(tmp_path, data_home, monkeypatch):
    import regfw_mnist.loader as loader

    def no_download(*args):
        raise AssertionError("download attempted although the files exist")

    monkeypatch.setattr(loader, "_download", no_download)
    root = write_idx(tmp_path / "flat", layout=None, n_train=30, n_test=10)
    data = build_data("fashion-mnist", root=str(root), train_limit=20)
    assert data.x_train.shape == (20, 784) and data.x_test.shape == (10, 784)
    prepared = list((data_home / "prepared").glob("FashionMNIST-*/FashionMNIST/raw/train-images-idx3-ubyte"))
    assert len(prepared) == 1
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{f}.gz" for f in FILES)  # source untouched


def test_mnist_files_replaced_after_they_were_unpacked_are_read_anew(tmp_path, data_home):
    """torchvision's layout with .gz files: the first read unpacks them beside the .gz; new .gz files
    written later (other images) are what the next read gives, not the old unpacked copy."""
    root = write_idx(tmp_path / "files", n_train=30, n_test=10, seed=0)
    first = build_data("mnist", root=str(root))
    assert (root / "MNIST" / "raw" / FILES[0]).is_file()  # unpacked in place
    write_idx(root, n_train=30, n_test=10, seed=1)
    again = build_data("mnist", root=str(root))
    reference = build_data("mnist", root=str(write_idx(tmp_path / "fresh", n_train=30, n_test=10, seed=1)))
    assert not torch.equal(first.x_train, again.x_train)
    assert torch.equal(again.x_train, reference.x_train) and torch.equal(again.y_test, reference.y_test)


def test_fashion_mnist_finds_the_debian_package_folder(tmp_path, data_home, monkeypatch):
    import regfw_mnist

    debian = write_idx(tmp_path / "usr-share-datasets-fashion-mnist", layout=None, n_train=30, n_test=10, seed=3)
    monkeypatch.setattr(regfw_mnist, "DEBIAN_FASHION", str(debian))
    data = build_data("fashion-mnist")  # no root: regfw's data folder (empty), then Debian's
    assert data.x_train.shape == (30, 784)


def test_missing_files_give_one_line_naming_folder_and_files(tmp_path, data_home, invoke):
    empty = tmp_path / "empty"
    result = invoke("run", "mnist", "--no-track", "--set", f"dataset.root={empty}", "--set", "dataset.download=false")
    assert result.exit_code != 0
    line = result.stderr.strip()
    assert line.startswith("regfw: error:") and "\n" not in line and "Traceback" not in result.stderr
    assert str(empty / "MNIST" / "raw") in line and all(f"{f}.gz" in line for f in FILES)


def test_failed_download_gives_one_line(tmp_path, data_home, invoke, monkeypatch):
    import torchvision.datasets

    # Nothing listens on the discard port: the download fails at once, with or without a network.
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    result = invoke("run", "mnist", "--dataset", "fashion-mnist", "--no-track",
                    "--set", f"dataset.root={tmp_path / 'nowhere'}")
    assert result.exit_code != 0
    line = result.stderr.strip()
    assert "\n" not in line and "download failed" in line and str(tmp_path / "nowhere" / "FashionMNIST" / "raw") in line


def test_mnist_recipe_learns_the_tiny_digits(tmp_path, data_home):
    root = write_idx(tmp_path / "files", n_train=400, n_test=100)
    config, outcome = run("mnist", "train.epochs=4", f"dataset.root={root}")
    assert config.optimizer.params["lr"] == pytest.approx(0.01 / 32) and config.train["batch_size"] == 32
    assert curve(outcome, "train_loss")[-1] < curve(outcome, "train_loss")[0]
    assert len(curve(outcome, "test_accuracy")) == 4
    # The same data with Adam: far above the 10% of chance, so images and labels line up.
    _, fast = run("mnist", "train.epochs=4", f"dataset.root={root}", swaps={"optimizer": "adam"})
    assert curve(fast, "test_accuracy")[-1] > 0.8


def test_every_mnist_parameter_is_trained(tmp_path, data_home):
    """The document never updates b1; here every parameter moves."""
    root = write_idx(tmp_path / "files", n_train=64, n_test=16)
    plugins = load_plugins()
    config = resolve(plugins.registry, "mnist", sets=[("train.epochs", "1"), ("dataset.root", str(root))])
    model = plugins.registry.get("model", "mlp").factory(**config.model.params)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = plugins.registry.get("optimizer", "sgd").factory(model.parameters(), **config.optimizer.params)
    data = build_data("mnist", root=str(root))
    loss = torch.nn.functional.cross_entropy(model(data.x_train), data.y_train)
    loss.backward()
    optimizer.step()
    assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- manual-gd -----------------------------------------------------------------------------------

def test_formula_gradient_equals_autograd_on_random_inputs():
    from regfw_manual_gd.model import ManualLinear

    generator = torch.Generator().manual_seed(1)
    for bias in (None, 0.5):
        for n in (1, 3, 17):
            model = ManualLinear(float(torch.randn(1, generator=generator)), bias)
            x, y = torch.randn(n, 1, generator=generator), torch.randn(n, 1, generator=generator)
            model.formula_grad(x, y)
            by_formula = [p.grad.clone() for p in model.parameters()]
            model.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            for formula, auto in zip(by_formula, (p.grad for p in model.parameters())):
                assert torch.allclose(formula, auto, rtol=1e-5, atol=1e-6)


def test_manual_gd_builds_no_autograd_graph(monkeypatch):
    outputs = []

    def forbid(*args, **kwargs):
        raise AssertionError("autograd backward called")

    monkeypatch.setattr(torch.autograd, "backward", forbid)
    monkeypatch.setattr(torch.Tensor, "backward", forbid)
    plugins = load_plugins()
    config = resolve(plugins.registry, "manual-gd", flags={"device": "cpu"})
    assert config.train["grad"] == "formula"
    real_factory = plugins.registry.get("model", "manual-linear").factory

    def factory(**params):
        model = real_factory(**params)
        model.register_forward_hook(lambda m, i, out: outputs.append((out.requires_grad, out.grad_fn)))
        return model

    entry = plugins.registry.get("model", "manual-linear")
    plugins.registry.entries["model"]["manual-linear"] = dataclasses.replace(entry, factory=factory)
    outcome = execute(config, plugins, NullTracker(), run_name="test")
    assert outcome.status == "FINISHED", outcome.error
    assert len(outputs) >= 100 and all(not grad and fn is None for grad, fn in outputs)
    assert abs(outcome.learned["w"] - 2) < 1e-4


def test_manual_gd_reaches_w_2_and_predicts_8():
    _, outcome = run("manual-gd")
    assert abs(outcome.learned["w"] - 2) < 1e-4
    assert outcome.learned["prediction_at_4"] == pytest.approx(8, abs=1e-3)
    costs = curve(outcome, "train_loss")
    assert len(costs) == 100 and all(b < a for a, b in zip(costs, costs[1:]))


@pytest.mark.parametrize("experiment, batch", [("manual-sgd", 1), ("manual-minibatch", 2)])
def test_manual_sgd_and_minibatch_converge(experiment, batch):
    config, outcome = run(experiment, "train.epochs=30")
    assert config.train["batch_size"] == batch and config.train["grad"] == "formula"
    assert abs(outcome.learned["w"] - 2) < abs(1.0 - 2) / 100
    assert curve(outcome, "train_loss")[-1] < curve(outcome, "train_loss")[0] / 1e4


def test_formula_and_autograd_training_agree():
    _, formula = run("manual-gd", "train.epochs=20")
    _, autograd = run("manual-gd", "train.epochs=20", "train.grad=autograd")
    assert formula.learned["w"] == pytest.approx(autograd.learned["w"], rel=1e-6)


def test_manual_gd_bias_fits_the_exercise_line():
    _, outcome = run("manual-gd", "model.bias=true", "dataset.weight=3", "dataset.bias=2", "train.epochs=3000",
                     "optimizer.lr=0.05")
    assert outcome.learned["w"] == pytest.approx(3, abs=0.01) and outcome.learned["b"] == pytest.approx(2, abs=0.02)


# --- what reaches MLflow -------------------------------------------------------------------------

def _artifacts(store, experiment, tmp_path, *sets):
    plugins = load_plugins()
    config = resolve(plugins.registry, experiment, sets=[tuple(s.split("=", 1)) for s in sets], flags={"device": "cpu"})
    outcome = execute(config, plugins, MlflowTracker(store, experiment), run_name="test")
    assert outcome.status == "FINISHED", outcome.error
    client = MlflowClient(store)
    run_ = client.get_run(outcome.run_id)
    folder = client.download_artifacts(outcome.run_id, "", str(tmp_path / experiment))
    return client, run_, Path(folder)


@pytest.mark.slow
def test_runs_carry_their_plots_parameters_and_landscapes(store, tmp_path):
    """One store for three runs (creating an MLflow database costs seconds)."""
    client, run_, folder = _artifacts(store, "manual-gd", tmp_path)
    names = {p.name for p in folder.iterdir()}
    assert {"mse_grid_w.svg", "mse_surface_wb.svg", "loss_curve.svg", "fit.svg", "learned_parameters.json"} <= names
    grid = json.loads((folder / "mse_grid_w.json").read_text())
    assert len(grid["w"]) == 41 and grid["w"][0] == 0 and grid["w"][-1] == 4 and grid["best_w"] == 2
    surface = json.loads((folder / "mse_surface_wb.json").read_text())
    flat = [(v, w, b) for b, row in zip(surface["b"], surface["mse[b][w]"]) for w, v in zip(surface["w"], row)]
    assert min(flat)[1:] == (3.0, 2.0)
    predictions = json.loads((folder / "predictions.json").read_text())
    assert predictions["before"] == 4.0 and predictions["after"] == pytest.approx(8, abs=1e-3)
    assert abs(metrics_of(run_)["learned.w"] - 2) < 1e-4
    assert len(client.get_metric_history(run_.info.run_id, stored("train_loss"))) == 100

    _, run_, folder = _artifacts(store, "quadratic-linear", tmp_path, "train.epochs=50")
    assert {"fit.svg", "loss_curve.svg", "learned_parameters.json"} <= {p.name for p in folder.iterdir()}
    assert set(json.loads((folder / "learned_parameters.json").read_text())) == {"w1", "b1", "w2", "b2", "a", "b", "c"}
    assert {"optimum_loss", "excess_loss", "learned.a", "learned.w1"} <= set(metrics_of(run_))
    client, run_, folder = _artifacts(store, "binary", tmp_path, "train.epochs=2", "dataset.n_per_class=500",
                                      "dataset.n_train_per_class=350")
    assert {"accuracy_curve.svg", "loss_curve.svg"} <= {p.name for p in folder.iterdir()}
    for metric in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        assert [m.step for m in client.get_metric_history(run_.info.run_id, stored(metric))] == [1, 2]


def _error(result) -> str:
    assert result.exit_code == 1 and result.stderr.startswith("regfw: error: ") and result.stderr.count("\n") == 1
    return result.stderr


def test_a_truncated_gz_names_the_file_and_leaves_no_copy(tmp_path, data_home, invoke):
    root = write_idx(tmp_path / "files")
    damaged = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:200])
    line = _error(invoke("run", "mnist", "--no-track", "--set", f"dataset.root={root}"))
    assert f"cannot decompress {damaged}: Compressed file ended" in line and "delete it" in line
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(f"{f}.gz" for f in FILES)


def test_a_failed_download_leaves_no_folder_it_made(tmp_path, data_home, invoke, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # refused at once
    (tmp_path / "kept").mkdir()
    line = _error(invoke("run", "mnist", "--no-track", "--set", f"dataset.root={tmp_path / 'kept' / 'new' / 'root'}"))
    assert "download failed" in line
    assert list((tmp_path / "kept").iterdir()) == []  # not even the root, which did not exist before


def test_the_files_missing_are_exactly_those_missing(tmp_path, data_home, invoke):
    root = write_idx(tmp_path / "files")
    for name in FILES[2:]:
        (root / "MNIST" / "raw" / f"{name}.gz").unlink()
    line = _error(invoke("run", "mnist", "--no-track", "--set", f"dataset.root={root}", "--set", "dataset.download=false"))
    assert "2 of the 4 files not found" in line and f"in {root / 'MNIST' / 'raw'}," in line
    assert all(f"{name}.gz" in line for name in FILES[2:]) and not any(name in line for name in FILES[:2])


@pytest.mark.parametrize("installed", [True, False])
def test_only_the_debian_hint_that_applies(tmp_path, data_home, invoke, monkeypatch, installed):
    import regfw_mnist

    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    if installed:
        write_idx(debian, layout=None, n_train=30, n_test=10)
    monkeypatch.setattr(regfw_mnist, "DEBIAN_FASHION", str(debian))
    (tmp_path / "empty").mkdir()
    line = _error(invoke("run", "mnist", "--dataset", "fashion-mnist", "--no-track",
                         "--set", f"dataset.root={tmp_path / 'empty'}", "--set", "dataset.download=false"))
    if installed:
        assert line.rstrip().endswith(f"Debian's dataset-fashion-mnist files are in {debian}: leave dataset.root unset "
                                      "to use them") and "install" not in line
    else:
        assert line.rstrip().endswith(f"or install Debian's dataset-fashion-mnist package (it puts them in {debian})")
