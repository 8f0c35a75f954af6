"""`regfw runs` and `regfw compare` over a real store holding a real sweep."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from regfw.cli import cli
from regfw.plugins import reset_plugins

from conftest import metrics_of

LRS = ("0.001", "0.01", "0.1")


def _cli(*args):
    reset_plugins()
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _one_line_error(result):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("regfw: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One sweep of linear (3 lrs x 2 seeds) plus a lone run in another experiment."""
    folder = tmp_path_factory.mktemp("runs-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = _cli("sweep", "linear", "--set", "optimizer.lr=" + ",".join(LRS), "--seeds", "0,1", "--epochs", "50",
                  "--tracking-uri", uri, "--quiet")
    assert result.exit_code == 0, result.stderr
    result = _cli("run", "linear", "--epochs", "20", "--experiment-name", "other", "--tracking-uri", uri, "--quiet")
    assert result.exit_code == 0, result.stderr
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("linear")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("regfw.role") == "sweep")
    children = [r for r in runs if r is not parent]
    return {"uri": uri, "folder": folder, "client": client, "parent": parent, "children": children}


@pytest.mark.slow
def test_runs_table_shows_the_points_and_the_params_that_differ(swept):
    result = _cli("runs", "linear", "--tracking-uri", swept["uri"])
    assert result.exit_code == 0, result.stderr
    header, rule, *rows = result.stdout.splitlines()
    assert len(rows) == 6  # the six points; the sweep's parent run is not a row
    columns = header.split()
    assert columns[:3] == ["run", "id", "status"]
    assert "seed" in columns and "optimizer.lr" in columns
    assert "train.epochs" not in columns and "dataset.n_samples" not in columns  # equal everywhere
    assert {"final_train_loss", "best_train_loss", "duration"} <= set(columns)
    for child in swept["children"]:
        line = next(r for r in rows if child.info.run_id[:8] in r)
        assert line.startswith(child.info.run_name)
        assert "FINISHED" in line


def test_runs_json_matches_the_store(swept):
    result = _cli("runs", "linear", "--json", "--tracking-uri", swept["uri"])
    rows = json.loads(result.stdout)
    assert {r["run_id"] for r in rows} == {c.info.run_id for c in swept["children"]}
    for row in rows:
        child = next(c for c in swept["children"] if c.info.run_id == row["run_id"])
        assert row["params"] == child.data.params
        assert row["metrics"]["final_train_loss"] == metrics_of(child)["final_train_loss"]
        assert row["parent_run_id"] == swept["parent"].info.run_id
        assert row["duration_s"] >= row["metrics"]["train_seconds"] * 0.5


def test_runs_of_every_experiment_and_of_one_sweep(swept):
    result = _cli("runs", "--tracking-uri", swept["uri"])
    assert result.exit_code == 0, result.stderr
    header, _, *rows = result.stdout.splitlines()
    assert "experiment" in header.split() and len(rows) == 7
    assert any(" other " in r for r in rows)
    sweep_id = swept["parent"].data.tags["regfw.sweep_id"]
    result = _cli("runs", "--sweep", sweep_id, "--json", "--tracking-uri", swept["uri"])
    assert len(json.loads(result.stdout)) == 6


def test_group_by_aggregates_over_seeds(swept):
    result = _cli("runs", "linear", "--group-by", "optimizer.lr", "--tracking-uri", swept["uri"])
    assert result.exit_code == 0, result.stderr
    header, _, *rows = result.stdout.splitlines()
    footer = rows.pop()
    assert len(rows) == 3 and all("±" in r for r in rows)
    assert "over seed" in footer and "3 groups of 6 runs" in footer
    assert [r.split()[0] for r in rows] == list(LRS)
    groups = json.loads(_cli("runs", "linear", "--group-by", "optimizer.lr", "--json",
                             "--tracking-uri", swept["uri"]).stdout)
    for group in groups:
        lr = group["group"]["optimizer.lr"]
        values = [metrics_of(c)["final_train_loss"] for c in swept["children"] if c.data.params["optimizer.lr"] == lr]
        stat = group["metrics"]["final_train_loss"]
        assert group["runs"] == stat["n"] == 2 and group["over"] == ["seed"]
        assert stat["mean"] == pytest.approx(statistics.fmean(values))
        assert stat["std"] == pytest.approx(statistics.stdev(values))
        assert stat["std"] > 0  # the seeds really differ
    means = {g["group"]["optimizer.lr"]: g["metrics"]["final_train_loss"]["mean"] for g in groups}
    assert means["0.1"] < means["0.01"] < means["0.001"]
    # sorted by a metric's mean, best first
    best = _cli("runs", "linear", "--group-by", "optimizer.lr", "--sort", "final_train_loss", "--limit", "1",
                "--tracking-uri", swept["uri"]).stdout.splitlines()
    assert best[2].split()[0] == "0.1" and "1 group of 2 runs" in best[-1]


def test_filter_sort_and_limit(swept):
    uri = swept["uri"]
    rows = json.loads(_cli("runs", "linear", "--filter", "params.optimizer.lr = '0.1'", "--json",
                           "--tracking-uri", uri).stdout)
    assert len(rows) == 2 and {r["params"]["optimizer.lr"] for r in rows} == {"0.1"}
    rows = json.loads(_cli("runs", "linear", "--sort", "final_train_loss", "--json", "--tracking-uri", uri).stdout)
    losses = [r["metrics"]["final_train_loss"] for r in rows]
    assert losses == sorted(losses) and len(losses) == 6
    rows = json.loads(_cli("runs", "linear", "--sort", "-final_train_loss", "--limit", "2", "--json",
                           "--tracking-uri", uri).stdout)
    assert [r["metrics"]["final_train_loss"] for r in rows] == sorted(losses, reverse=True)[:2]
    rows = json.loads(_cli("runs", "linear", "--limit", "3", "--json", "--tracking-uri", uri).stdout)
    assert len(rows) == 3
    result = _cli("runs", "linear", "--metric", "learned.weight", "--tracking-uri", uri)
    assert "learned.weight" in result.stdout.splitlines()[0] and "final_train_loss" not in result.stdout


@pytest.mark.parametrize("args, expected", [
    (["runs", "linear", "--filter", "params.optimizer.lr = "], "bad --filter"),
    (["runs", "linear", "--filter", "metrics.final_train_loss <"], "bad --filter"),
    (["runs", "lnear"], "did you mean 'linear'"),
    (["runs", "linear", "--sort", "final_trian_loss"], "did you mean 'final_train_loss'"),
    (["runs", "linear", "--group-by", "optimizer.lrr"], "no listed run has param 'optimizer.lrr'"),
    (["runs", "linear", "--metric", "nope"], "no listed run has metric 'nope'"),
    (["compare", "deadbeef", "0123abcd"], "no run 'deadbeef'"),
    (["compare", "not-an-id", "0123abcd"], "is not a run id"),
])
def test_bad_input_is_one_line(swept, args, expected):
    result = _cli(*args, "--tracking-uri", swept["uri"])
    assert expected in _one_line_error(result)


def test_reading_a_missing_store_creates_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    assert "no run store" in _one_line_error(_cli("runs", "--tracking-uri", uri))
    assert "no run store" in _one_line_error(_cli("compare", "abc", "def", "--tracking-uri", uri))
    assert not (tmp_path / "none").exists()


def test_compare_prints_differences_and_overlays_curves(swept, tmp_path):
    children = sorted(swept["children"], key=lambda c: (c.data.params["seed"], c.data.params["optimizer.lr"]))
    fast = next(c for c in children if c.data.params["optimizer.lr"] == "0.1" and c.data.params["seed"] == "0")
    slow = next(c for c in children if c.data.params["optimizer.lr"] == "0.001" and c.data.params["seed"] == "0")
    plot = tmp_path / "overlay.png"
    # unique prefixes, as `regfw runs` prints them, are enough
    result = _cli("compare", fast.info.run_id[:8], slow.info.run_id, "--plot", plot, "--tracking-uri", swept["uri"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    row = {line.split()[0]: line.split()[1:] for line in lines[2:] if line.strip()}
    assert row["optimizer.lr"] == ["0.1", "0.001"]
    assert "seed" not in row and "dataset.n_samples" not in row and "train.epochs" not in row  # equal
    assert row["status"] == ["FINISHED", "FINISHED"]
    final = [float(v) for v in row["final_train_loss"]]
    assert final[0] == pytest.approx(metrics_of(fast)["final_train_loss"], rel=1e-3)
    assert final[0] < final[1]
    assert "learned.weight" in row and "train_loss" not in row  # the raw curve's last value is final_*
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width = matplotlib.image.imread(plot).shape[:2]
    assert width > 400 and height > 300
    info = json.loads(_cli("compare", fast.info.run_id, slow.info.run_id, "--json", "--all-params",
                           "--tracking-uri", swept["uri"]).stdout)
    assert info["differing_params"] == ["optimizer.lr"] and info["panels"] is None


def test_compare_needs_two_runs_and_a_writable_plot(swept, tmp_path):
    one = swept["children"][0].info.run_id
    two = swept["children"][1].info.run_id
    assert "at least two" in _one_line_error(_cli("compare", one, "--tracking-uri", swept["uri"]))
    assert "given twice" in _one_line_error(_cli("compare", one, one, "--tracking-uri", swept["uri"]))
    missing = tmp_path / "no" / "such" / "dir" / "x.png"
    assert "does not exist" in _one_line_error(_cli("compare", one, two, "--plot", missing,
                                                    "--tracking-uri", swept["uri"]))


CLASSIFIER = """
from regfw import hookimpl

def make(generator, n_samples):
    import torch
    from regfw.data import Data
    x = torch.randn(n_samples, 2, generator=generator)
    y = (x[:, :1] - 0.5 * x[:, 1:] > 0).float()
    cut = n_samples * 3 // 4
    return Data(x[:cut], y[:cut], x[cut:], y[cut:], task="binary")

@hookimpl
def register_datasets(register):
    register("halfplane", make, description="points labelled by a half-plane", params={"n_samples": 200},
             dims=lambda p: {"in_features": 2, "out_features": 1})

@hookimpl
def register_experiments(register):
    register("halfplane", description="logistic regression on a half-plane", dataset="halfplane",
             model="linear", loss="bce-with-logits", optimizer=("sgd", {"lr": 0.5}),
             train={"epochs": 40, "metrics": ["accuracy"]})
"""


@pytest.mark.slow
def test_compare_plots_accuracy_for_classifiers(fake_dist, invoke, store, tmp_path):
    fake_dist("halfplane", {"halfplane_plugin": CLASSIFIER}, {"halfplane": "halfplane_plugin"})
    result = invoke("sweep", "halfplane", "--set", "optimizer.lr=0.05,0.5", "--tracking-uri", store)
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = json.loads(invoke("runs", "halfplane", "--json", "--tracking-uri", store).stdout)
    assert len(rows) == 2
    assert all(r["metrics"]["final_test_accuracy"] > 0.8 for r in rows if r["params"]["optimizer.lr"] == "0.5")
    table = invoke("runs", "halfplane", "--tracking-uri", store).stdout.splitlines()[0].split()
    assert {"final_test_accuracy", "best_test_accuracy", "final_test_loss"} <= set(table)
    plot = tmp_path / "classifiers.png"
    info = json.loads(invoke("compare", *(r["run_id"] for r in rows), "--plot", plot, "--json",
                             "--tracking-uri", store).stdout)
    assert info["panels"] == ["loss", "accuracy"]
    assert Path(info["plot"]).read_bytes()[:4] == b"\x89PNG"
    import matplotlib.image

    height, width = matplotlib.image.imread(plot).shape[:2]
    assert width > 1.5 * height  # two panels side by side
