"""`regfw sweep`: the grid rule, parent and child runs in a real store, failures, parallel
workers and signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from regfw.errors import RegfwError
from regfw.plugins import load_plugins
from regfw.cli.common import FLAG_OPTIONS
from regfw.sweep import build_grid, split_values
from conftest import metrics_of
from regfw.store.keys import stored

REGFW = str(Path(sys.executable).with_name("regfw"))


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _all_runs(uri, experiment="linear"):
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


def _one_line_error(result):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("regfw: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


# -- the grid rule ----------------------------------------------------------------------------
def test_commas_split_scalar_params_and_seeds_vary_fastest(registry):
    grid = build_grid(registry, "linear", sets=["optimizer.lr=0.001,0.01,0.1"], seeds="0,1")
    assert [a.key for a in grid.axes] == ["optimizer.lr", "seed"]
    got = [(p.config.optimizer.params["lr"], p.config.seed) for p in grid.points]
    assert got == [(0.001, 0), (0.001, 1), (0.01, 0), (0.01, 1), (0.1, 0), (0.1, 1)]
    assert [p.run_name for p in grid.points] == [f"lr={lr} seed={s}" for lr, s in got]


@pytest.mark.parametrize("text, expected", [
    ("8,16", [[8, 16]]),                # a comma list is ONE value of a list-typed param
    ("8;16", [[8], [16]]),              # ';' separates axis values
    ("8;16,16", [[8], [16, 16]]),
    ("[8],[16,16]", [[8], [16, 16]]),   # bracketed lists separated by commas
    ("[8, 16]", [[8, 16]]),
])
def test_list_typed_params_take_comma_lists_as_one_value(registry, text, expected):
    grid = build_grid(registry, "linear", sets=[f"model.hidden={text}"], swaps={"model": "mlp"})
    assert [p.config.model.params["hidden"] for p in grid.points] == expected
    assert bool(grid.axes) == (len(expected) > 1)


def test_train_metrics_is_list_typed_and_semicolon_works_for_scalars(registry):
    grid = build_grid(registry, "linear", sets=["train.epochs=5;7"])
    assert [p.config.train["epochs"] for p in grid.points] == [5, 7]
    grid = build_grid(registry, "linear", sets=["optimizer.lr=0.5", "train.log_every=1,2"], seeds="0-2")
    assert len(grid.points) == 6
    assert {p.config.optimizer.params["lr"] for p in grid.points} == {0.5}


def test_a_swept_component_keeps_later_overrides(registry):
    grid = build_grid(registry, "linear", sets=["optimizer=sgd,adam", "optimizer.lr=0.05"])
    assert [(p.config.optimizer.name, p.config.optimizer.params["lr"]) for p in grid.points] == [
        ("sgd", 0.05), ("adam", 0.05)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(sets=["optimizer.lr=0.1", "optimizer.lr=0.2"]), "given twice"),
    (dict(sets=["optimizer.lr=0.1,0.1"]), "'0.1' is given twice"),
    (dict(sets=["optimizer.lr=0.1,,0.2"]), "empty value"),
    (dict(sets=["optimizer.lr=0.1,abc"]), "optimizer.lr expects a number"),
    (dict(sets=["optimizer.lrr=0.1,0.2"]), "unknown key 'optimizer.lrr'"),
    (dict(sets=["optimizer.lr=0.1,0.2"], flags={"optimizer.lr": 0.3}, flag_options=FLAG_OPTIONS), "also fixed by --lr"),
    (dict(sets=["seed=1,2"], seeds="0,1"), "not both"),
    (dict(seeds="a,b"), "--seeds expects"),
    (dict(seeds="3-1"), "empty"),
    (dict(sets=["lr"]), "key=value"),
])
def test_bad_grids_are_one_line_errors(registry, kwargs, message):
    with pytest.raises(RegfwError, match=None) as info:
        build_grid(registry, "linear", **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_split_values_direct():
    assert split_values("k", "1,2", False) == ["1", "2"]
    assert split_values("k", "1,2", True) == ["1,2"]
    assert split_values("k", "[1,2],[3]", True) == ["[1,2]", "[3]"]


# -- through the CLI ---------------------------------------------------------------------------
def test_dry_run_lists_points_and_writes_nothing(invoke, store):
    result = invoke("sweep", "linear", "--model", "mlp", "--set", "model.hidden=8;16,16", "--seeds", "0,1",
                    "--dry-run", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert "4 points" in result.stdout
    lines = result.stdout.splitlines()[1:]
    assert [line.split("] ", 1)[1] for line in lines] == [
        "hidden=8 seed=0", "hidden=8 seed=1", "hidden=16,16 seed=0", "hidden=16,16 seed=1"]
    assert not Path(store[len("sqlite:///"):]).exists()


def test_bad_params_fail_before_any_run(invoke, store):
    result = invoke("sweep", "linear", "--set", "optimizer.lrr=0.1,0.2", "--tracking-uri", store)
    assert result.exit_code == 1
    assert "optimizer.lrr" in _one_line_error(result)
    result = invoke("sweep", "linear", "--set", "optimizer.lr=0.1,0.2", "--jobs", "0", "--tracking-uri", store)
    assert result.exit_code == 2
    _one_line_error(result)
    assert not Path(store[len("sqlite:///"):]).exists()


@pytest.mark.slow
def test_sweep_makes_one_parent_and_a_child_per_point(invoke, store):
    result = invoke("sweep", "linear", "--set", "optimizer.lr=0.001,0.01,0.1", "--seeds", "0,1",
                    "--epochs", "50", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    runs = _all_runs(store)
    parents = [r for r in runs if r.data.tags.get("regfw.role") == "sweep"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 7 and len(parents) == 1 and len(children) == 6
    parent = parents[0]
    sweep_id = parent.data.tags["regfw.sweep_id"]
    assert sweep_id in result.stdout and parent.info.run_id in result.stdout
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sweep.optimizer.lr"] == "0.001,0.01,0.1"
    assert parent.data.params["train.epochs"] == "50"  # shared by every point
    assert "optimizer.lr" not in parent.data.params  # varies: not a parent param
    for child in children:
        tags = child.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["regfw.sweep_id"] == sweep_id
        assert child.info.status == "FINISHED"
        assert tags["regfw.sweep_point"] == f"optimizer.lr={child.data.params['optimizer.lr']} seed={child.data.params['seed']}"
        assert child.data.params["train.epochs"] == "50"
    combos = {(c.data.params["optimizer.lr"], c.data.params["seed"]) for c in children}
    assert combos == {(lr, s) for lr in ("0.001", "0.01", "0.1") for s in ("0", "1")}
    assert sorted(int(c.data.tags["regfw.sweep_index"]) for c in children) == list(range(6))
    names = {c.info.run_name for c in children}
    assert "lr=0.1 seed=0" in names and "lr=0.1 seed=1" in names  # what tells siblings apart, only
    # The sweep measures something real: after 50 epochs a larger step has a lower loss, every seed.
    loss = {(c.data.params["optimizer.lr"], c.data.params["seed"]): metrics_of(c)["final_train_loss"] for c in children}
    for seed in ("0", "1"):
        assert loss[("0.1", seed)] < loss[("0.01", seed)] < loss[("0.001", seed)]


@pytest.mark.slow
def test_parallel_sweep_goes_on_past_failures_and_counts_them(invoke, tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'store' / 'mlflow.db'}"  # nothing exists yet
    result = invoke("sweep", "linear", "--set", "optimizer.lr=0.1,1e6", "--seeds", "0,1", "--epochs", "30",
                    "--jobs", "2", "--tracking-uri", uri)  # the workers are real spawned processes
    assert result.exit_code == 2, result.stderr  # two failed points
    assert _one_line_error(result).startswith("regfw: error: 2 of 4 sweep points failed")
    assert "in 2 processes" in result.stdout
    runs = _all_runs(uri)
    parent = next(r for r in runs if r.data.tags.get("regfw.role") == "sweep")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 5 and len(children) == 4
    by_lr = {}
    for child in children:
        by_lr.setdefault(child.data.params["optimizer.lr"], []).append(child)
    assert {c.info.status for c in by_lr["0.1"]} == {"FINISHED"}
    assert {c.info.status for c in by_lr["1000000.0"]} == {"FAILED"}
    assert all("diverged" in c.data.tags["regfw.failure"] for c in by_lr["1000000.0"])
    assert parent.info.status == "FAILED"
    assert parent.data.tags["regfw.sweep_failed"] == "2"
    assert parent.data.tags["regfw.sweep_finished"] == "2"
    # the diverged seeds show in the seed average instead of vanishing from it
    result = invoke("runs", "linear", "--group-by", "optimizer.lr", "--json", "--tracking-uri", uri)
    groups = {g["group"]["optimizer.lr"]: g for g in json.loads(result.stdout)}
    assert groups["1000000.0"]["statuses"] == {"FAILED": 2}
    assert groups["1000000.0"]["metrics"]["final_train_loss"]["mean"] == "inf"
    assert groups["0.1"]["statuses"] == {"FINISHED": 2} and groups["0.1"]["metrics"]["final_train_loss"]["mean"] < 0.2


def _children_with_metrics(path: Path) -> int:
    """Child runs that have logged two train_loss points, read with sqlite3 (read-only): opening an MlflowClient
    here while the sweep is still creating the database would race its schema migration."""
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute("SELECT COUNT(*) FROM (SELECT t.run_uuid FROM tags t JOIN metrics m ON m.run_uuid = t.run_uuid "
                              "WHERE t.key = 'mlflow.parentRunId' AND m.key = ? "
                              "GROUP BY t.run_uuid HAVING COUNT(*) >= 2)", (stored("train_loss"),)).fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigterm_ends_a_parallel_sweep_as_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([REGFW, "sweep", "linear", "--set", "optimizer.lr=0.01,0.02,0.03", "--epochs", "50000000",
                             "--log-every", "100", "--jobs", "2", "--tracking-uri", uri, "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            start_new_session=True)  # its own process group: cleanup reaches its workers too
    try:
        deadline = time.monotonic() + 180
        training = 0
        while time.monotonic() < deadline and training < 2:
            time.sleep(1)
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended early ({proc.returncode}): {proc.communicate()[1]}")
            training = _children_with_metrics(tmp_path / "mlflow.db")
        assert training == 2, "the two workers never started training"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers, by the group this test started
            proc.communicate()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    runs = _all_runs(uri)
    parent = next(r for r in runs if r.data.tags.get("regfw.role") == "sweep")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert parent.info.status == "KILLED"
    assert len(children) == 2 and {c.info.status for c in children} == {"KILLED"}
    assert parent.data.tags["regfw.sweep_not_run"] == "1"
    client = _client(uri)
    for child in children:  # flushed on the way out: the curve so far is in the store
        assert int(child.data.tags["regfw.epochs_done"]) > 0
        history = client.get_metric_history(child.info.run_id, stored("train_loss"))
        assert history and history[-1].value < history[0].value


@pytest.mark.slow
def test_run_with_sweep_flag_is_the_same_sweep(invoke, store):
    result = invoke("run", "linear", "--sweep", "--set", "optimizer.lr=0.01,0.1", "--epochs", "20",
                    "--tracking-uri", store, "--quiet")
    assert result.exit_code == 0, result.stderr
    runs = _all_runs(store)
    parent = next(r for r in runs if r.data.tags.get("regfw.role") == "sweep")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and sorted(c.data.params["optimizer.lr"] for c in children) == ["0.01", "0.1"]
    result = invoke("run", "linear", "--sweep", "--run-name", "x", "--set", "optimizer.lr=0.01,0.1")
    assert "--run-name does not go with --sweep" in _one_line_error(result)  # --no-track does (test_plugin_messages)
    result = invoke("run", "linear", "--set", "optimizer.lr=0.01,0.1", "--no-track")
    assert "optimizer.lr expects a number" in _one_line_error(result)  # without --sweep: one value


def test_points_of_one_sweep_build_one_seeds_data_once_and_start_from_the_same_weights():
    # Inside a sweep or search (shared_data), a second point of the same dataset and seed reuses the
    # first one's tensors, and its model starts from exactly the weights a point built alone gets.
    import torch

    from regfw.build import build_state, shared_data
    from regfw.config import parse_set, resolve
    from regfw.device import resolve_device
    from regfw.plugins import get_plugins

    registry = get_plugins().registry
    config = lambda *sets: resolve(registry, "mlp-regression", sets=parse_set(["model.hidden=[8]", *sets]))  # noqa: E731
    alone = build_state(config("optimizer.lr=0.1"), registry, resolve_device("cpu"))
    with shared_data():
        first = build_state(config("optimizer.lr=0.01"), registry, resolve_device("cpu"))
        second = build_state(config("optimizer.lr=0.1"), registry, resolve_device("cpu"))
        other_seed = build_state(config("seed=1"), registry, resolve_device("cpu"))
    assert second.data.x_train is first.data.x_train and other_seed.data.x_train is not first.data.x_train
    assert not torch.equal(other_seed.data.x_train, first.data.x_train)
    assert torch.equal(second.data.x_train, alone.data.x_train) and second.data.tags == alone.data.tags
    for mine, theirs in zip(second.model.parameters(), alone.model.parameters()):
        assert torch.equal(mine, theirs)
    assert torch.equal(second.generator.get_state(), alone.generator.get_state())
