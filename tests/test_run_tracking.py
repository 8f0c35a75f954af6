"""`regfw run` into a real SQLite MLflow store, read back with MlflowClient."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow import MlflowClient

from regfw.config import resolve
from regfw.plugins import load_plugins
from regfw.runner import execute
from regfw.store import MlflowTracker, NullTracker
from conftest import metrics_of
from regfw.store.keys import stored


def _only_run(uri, experiment="linear"):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_linear_run_is_recorded_with_params_tags_metrics_artifacts(invoke, store, tmp_path):
    result = invoke("run", "linear", "--tracking-uri", store, "--epochs", 300, "--set", "dataset.n_samples=50")
    assert result.exit_code == 0, result.stderr
    client, run = _only_run(store)
    assert run.info.status == "FINISHED"
    assert run.info.run_id in result.stdout and "regfw ui" in result.stdout
    params = run.data.params
    assert params["optimizer"] == "sgd" and float(params["optimizer.lr"]) == 0.01
    assert params["dataset.n_samples"] == "50" and params["train.epochs"] == "300"
    tags = run.data.tags
    assert tags["regfw.experiment"] == "linear" and tags["regfw.device"] == "cpu"
    assert tags["regfw.model"] == "linear" and tags["regfw.model.plugin"].startswith("linear (regfw ")
    assert tags["regfw.optimizer.plugin"].startswith("torch (regfw ")
    assert tags["regfw.torch_version"] == torch.__version__ and tags["regfw.seed"] == "0"
    metrics = metrics_of(run)
    for key in ("final_train_loss", "best_train_loss", "optimum_loss", "excess_loss", "learned.weight", "learned.bias"):
        assert key in metrics
    assert metrics["excess_loss"] >= -1e-9
    history = client.get_metric_history(run.info.run_id, stored("train_loss"))
    assert [m.step for m in history][:2] == [1, 2] and history[-1].step == 300
    assert history[-1].value < history[0].value / 10  # it learned
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "loss_curve.svg", "fit.svg", "learned_parameters.json", "model_state_dict.pt"} <= names
    local = client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl"))
    state = torch.load(f"{local}/model_state_dict.pt", weights_only=True)
    assert state["weight"].item() == pytest.approx(metrics["learned.weight"], rel=1e-6)
    learned = json.loads(open(f"{local}/learned_parameters.json").read())
    assert set(learned) == {"weight", "bias"}


def test_default_linear_recipe_learns_the_documented_line():
    """1000 full-batch SGD epochs: weight 3 ± 0.05, bias 10.5 ± 0.1 (noise U[0,1) has mean 0.5)."""
    plugins = load_plugins()
    config = resolve(plugins.registry, "linear")
    outcome = execute(config, plugins, NullTracker(), run_name="t")
    assert outcome.status == "FINISHED"
    assert outcome.learned["weight"] == pytest.approx(3.0, abs=0.05)
    assert outcome.learned["bias"] == pytest.approx(10.5, abs=0.1)
    assert outcome.summary["final_train_loss"] == pytest.approx(outcome.summary["optimum_loss"], rel=0.01)


def test_same_seed_same_metrics_other_seed_differs():
    plugins = load_plugins()

    def curve(seed):
        config = resolve(plugins.registry, "linear", flags={"seed": seed, "train.epochs": 50})
        return execute(config, plugins, NullTracker(), run_name="t").history.curves["train_loss"]

    assert curve(3) == curve(3)
    assert curve(3) != curve(4)


def test_log_every_bounds_the_points_and_keeps_the_last(store):
    plugins = load_plugins()
    config = resolve(plugins.registry, "linear", flags={"train.epochs": 95, "train.log_every": 10})
    outcome = execute(config, plugins, MlflowTracker(store, "linear"), run_name="t")
    steps = [m.step for m in MlflowClient(store).get_metric_history(outcome.run_id, stored("train_loss"))]
    assert steps == [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]


def test_default_interval_caps_points_near_a_thousand():
    from regfw.recorder import default_log_every

    assert default_log_every(1000) == 1
    assert 1000 >= 500000 // default_log_every(500000) >= 900


@pytest.mark.slow
def test_experiment_name_and_run_name(invoke, store):
    result = invoke("run", "linear", "--tracking-uri", store, "--epochs", 5, "--lr", 0.1, "--seed", 2,
                    "--experiment-name", "mine")
    assert result.exit_code == 0, result.stderr
    _, run = _only_run(store, "mine")
    assert run.info.run_name.split()[0] == "linear"
    assert {"lr=0.1", "seed=2", "epochs=5"} == set(run.info.run_name.split()[1:])
    invoke("run", "linear", "--tracking-uri", store, "--epochs", 5, "--run-name", "named", "--experiment-name", "other")
    assert _only_run(store, "other")[1].info.run_name == "named"


def test_mlflow_tracking_uri_env_is_honoured(invoke, store):
    result = invoke("run", "linear", "--epochs", 3, "-q", env={"MLFLOW_TRACKING_URI": store})
    assert result.exit_code == 0 and result.stdout == ""
    assert _only_run(store)[1].info.status == "FINISHED"


@pytest.mark.slow
def test_default_store_is_mlruns_in_the_working_directory(regfw_script, tmp_path):
    result = regfw_script("run", "linear", "--epochs", 20, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    db = tmp_path / "mlruns" / "mlflow.db"
    assert db.exists()
    client, run = _only_run(f"sqlite:///{db}")
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns").resolve().as_uri())
    assert "INFO" not in result.stderr and "Warning" not in result.stderr


def test_config_yaml_is_what_safe_dump_writes_and_reads_back_for_every_experiment():
    """artifacts.run_yaml uses libyaml's dumper for speed: the text must be PyYAML's own."""
    import yaml

    from regfw.artifacts import run_yaml
    from regfw.config import resolve
    from regfw.plugins import get_plugins
    from regfw.protocols import RunView

    registry = get_plugins().registry
    for name in registry.names("experiment"):
        config = resolve(registry, name).to_dict()
        text = run_yaml(RunView(name, "FINISHED", config, {}, None, None, {}, {}, {}))
        assert text == yaml.safe_dump(config, sort_keys=False, default_flow_style=None), name
        assert yaml.safe_load(text) == config
