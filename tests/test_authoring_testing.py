"""regfw.testing as a plugin author uses it: only the given plugins, a real run into a temporary
store, and the conformance check."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from regfw.errors import RegfwError
from regfw.testing import check_plugin, plugins_for, run_experiment
from conftest import metrics_of

STEP = """
from regfw import Param, hookimpl

def data(generator, n_samples, height):
    import torch
    from regfw.data import Data
    x = torch.linspace(-1, 1, n_samples).unsqueeze(1)
    y = torch.where(x > 0, height, 0.0) + 0.05 * torch.randn(x.shape, generator=generator)
    return Data(x[::2], y[::2], x[1::2], y[1::2])

@hookimpl
def register_datasets(register):
    register("step", data, params={"n_samples": Param(64, min=4), "height": 2.0},
             dims=lambda p: {"in_features": 1, "out_features": 1})

@hookimpl
def register_experiments(register):
    register("step-fit", dataset="step", model=("mlp", {"hidden": [16]}), loss="mse",
             optimizer=("adam", {"lr": 0.02}), train={"epochs": 100})
"""


def plugin_module(source: str = STEP, name: str = "step_plugin") -> types.ModuleType:
    module = types.ModuleType(name)
    exec(source, module.__dict__)
    return module


def test_importing_regfw_testing_imports_neither_torch_nor_mlflow():
    code = "import sys, regfw.testing; print(sorted({'torch', 'mlflow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plugins_for_holds_only_the_given_plugins():
    alone = plugins_for(plugin_module(), include=())
    assert set(alone.info) == {"step_plugin"}
    assert alone.registry.names("dataset") == ["step"] and alone.registry.names("loss") == []
    # by default regfw's torch building blocks come along, so an experiment can name mse or adam
    default = plugins_for(plugin_module())
    assert set(default.info) == {"step_plugin", "torch"}
    assert "linear" not in default.registry.names("experiment")  # installed, but not asked for
    named = plugins_for({"stepper": plugin_module()}, include=("torch", "linear"))
    assert named.registry.get("dataset", "step").plugin == "stepper"
    assert "linear" in named.registry.names("experiment")


def test_plugins_for_raises_on_a_plugin_that_fails_to_register():
    bad = plugin_module("from regfw import hookimpl\n@hookimpl\ndef register_models(register):\n    register('x y', None)\n",
                        "bad_plugin")
    with pytest.raises(RegfwError, match="bad_plugin"):
        plugins_for(bad)
    with pytest.raises(RegfwError, match="no installed regfw plugin called 'nope'"):
        plugins_for(plugin_module(), include=("nope",))


@pytest.mark.slow
def test_run_experiment_records_a_real_run_and_returns_its_metrics(tmp_path):
    from mlflow import MlflowClient

    result = run_experiment("step-fit", plugin_module(), epochs=60, store=tmp_path)
    losses = result.curve("train_loss")
    assert result.status == "FINISHED" and len(losses) == 60
    assert losses[-1] < losses[0] / 4  # the MLP learns the step
    assert result.config.device == "cpu" and result.config.train["epochs"] == 60
    run = MlflowClient(result.tracking_uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert metrics_of(run)["final_train_loss"] == pytest.approx(result.metrics["final_train_loss"])
    assert metrics_of(run)["final_test_loss"] == pytest.approx(result.curve("test_loss")[-1])
    assert run.data.params["model"] == "mlp" and run.data.params["dataset.height"] == "2.0"


def test_run_experiment_overrides_swaps_and_seeds():
    plugin = plugin_module()
    one = run_experiment("step-fit", plugin, epochs=5, track=False, sets={"dataset.height": 5.0}, seed=3)
    two = run_experiment("step-fit", plugin, epochs=5, track=False, sets={"dataset.height": 5.0}, seed=3)
    assert one.curves == two.curves  # same seed, same numbers
    assert one.config.dataset.params["height"] == 5.0 and one.config.seed == 3
    swapped = run_experiment("step-fit", plugin, epochs=5, track=False, optimizer="sgd")
    assert swapped.config.optimizer.name == "sgd" and swapped.config.optimizer.params["lr"] == 0.01


def test_run_experiment_raises_with_the_reason_when_a_run_fails():
    with pytest.raises(AssertionError, match="FAILED: diverged"):
        run_experiment("step-fit", plugin_module(), epochs=50, track=False, optimizer="sgd",
                       sets={"optimizer.lr": 1e6})
    failed = run_experiment("step-fit", plugin_module(), epochs=50, track=False, optimizer="sgd",
                            sets={"optimizer.lr": 1e6}, check=False)
    assert failed.status == "FAILED" and "diverged" in failed.error


def test_check_plugin_on_a_module_and_on_an_installed_name():
    report = check_plugin(plugin_module())
    assert report.ok, str(report)
    assert [(c.kind, c.name) for c in report.components] == [("experiment", "step-fit"), ("dataset", "step")]
    installed = check_plugin("linear")
    assert installed.ok and {c.name for c in installed.components} == {"linear", "linear-1d"}
    empty = check_plugin(plugin_module("x = 1\n", "empty_plugin"))
    assert not empty.ok and empty.error == "registers no components"
    with pytest.raises(AssertionError, match="registers no components"):
        empty.assert_ok()
