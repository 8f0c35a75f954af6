"""The out-of-tree example plugin (examples/regfw-example), installed as a user installs it, driven
through the `regfw` script: listed, checked, run into MLflow, and mixed with other plugins."""

from __future__ import annotations

import math
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from conftest import metrics_of

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "regfw-example"


@pytest.fixture(autouse=True)
def _installed():
    found = [ep for ep in metadata.entry_points(group="regfw") if ep.name == "example"]
    if not found or found[0].dist.name != "regfw-example":
        pytest.fail("the example plugin is not installed: run `make setup` "
                    "(or pip install --no-deps -e examples/regfw-example)")


def test_listed_and_conforming(invoke):
    listing = invoke("list")
    rows = {tuple(line.split()[:2]) for line in listing.stdout.splitlines() if line.strip()}
    assert {("sine", "example"), ("fourier", "example"), ("lion", "example")} <= rows
    plugins = next(l for l in invoke("plugins").stdout.splitlines() if l.startswith("example "))
    assert "regfw-example 0.1.0" in plugins and plugins.rstrip().endswith("ok")
    check = invoke("check", "example")
    assert check.exit_code == 0, check.stdout + check.stderr
    lines = [l for l in check.stdout.splitlines() if l.startswith(("ok", "FAIL", "skip"))]
    assert [tuple(l.split()[:3]) for l in lines] == [
        ("ok", "experiment", "sine"), ("ok", "dataset", "sine"), ("ok", "model", "fourier"), ("ok", "optimizer", "lion")]


@pytest.mark.slow
def test_runs_recorded_in_mlflow_alone_and_mixed_with_other_plugins(regfw_script, store):
    from mlflow import MlflowClient

    sine = regfw_script("run", "sine", "--epochs", "300", "--tracking-uri", store, "--quiet")
    assert sine.returncode == 0, sine.stderr
    # Mixed: the linear plugin's experiment and data, torch's mse, the example's Lion optimizer.
    mixed = regfw_script("run", "linear", "--optimizer", "lion", "--lr", "0.05", "--tracking-uri", store, "--quiet")
    assert mixed.returncode == 0, mixed.stderr

    client = MlflowClient(store)
    runs = {}
    for name in ("sine", "linear"):
        (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
        runs[name] = run
        assert run.info.status == "FINISHED"

    sine_run = runs["sine"]
    tags, metrics = sine_run.data.tags, metrics_of(sine_run)
    assert tags["regfw.model.plugin"] == tags["regfw.optimizer.plugin"] == "example (regfw-example 0.1.0)"
    assert tags["regfw.loss"] == "mse" and tags["regfw.loss.plugin"].startswith("torch (regfw ")
    # sin(2x + 0.5) * 1.5 = 1.5 cos(0.5) sin(2x) + 1.5 sin(0.5) cos(2x): Lion finds the coefficients
    assert metrics["learned.sin2"] == pytest.approx(1.5 * math.cos(0.5), abs=0.05)
    assert metrics["learned.cos2"] == pytest.approx(1.5 * math.sin(0.5), abs=0.05)
    assert abs(metrics["learned.sin1"]) < 0.05 and metrics["excess_loss"] < 1e-3
    artifacts = {f.path for f in client.list_artifacts(sine_run.info.run_id)}
    assert {"config.yaml", "fit.svg", "loss_curve.svg", "model_state_dict.pt", "learned_parameters.json"} <= artifacts

    linear_run = runs["linear"]
    tags, metrics = linear_run.data.tags, metrics_of(linear_run)
    assert tags["regfw.dataset.plugin"].startswith("linear (regfw ")
    assert tags["regfw.optimizer"] == "lion" and tags["regfw.optimizer.plugin"] == "example (regfw-example 0.1.0)"
    assert linear_run.data.params["optimizer.lr"] == "0.05" and linear_run.data.params["optimizer.beta2"] == "0.99"
    assert metrics["learned.weight"] == pytest.approx(3.0, abs=0.05)
    assert metrics["excess_loss"] < 1e-3


@pytest.mark.slow
def test_the_example_passes_its_own_tests():
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE)],
                            capture_output=True, text=True, timeout=300, cwd=EXAMPLE)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 passed" in result.stdout
