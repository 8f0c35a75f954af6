"""`regfw sweep --vectorize`: stacked points equal their single runs, per-point faults, the
reasons points do not stack, and the CLI end to end on a real SQLite store."""

from __future__ import annotations

import math

import pytest

from regfw.build import build_state
from regfw.engine import train
from regfw.plugins import load_plugins
from regfw.recorder import Recorder
from regfw.store import tags as T
from regfw.store.keys import stored
from regfw.sweep import build_grid, run_sweep
from regfw.vectorize import plan_buckets
from regfw.vectorize.optimizers import stacked
from regfw.vectorize.record import StackRecorder
from regfw.vectorize.stack import stack_states
from regfw.vectorize.train import train_stack

RTOL = 1e-5  # the stated tolerance: CPU float32, curves and final parameters, relative
SMALL_MLP = ["dataset.n_samples=300", "dataset.n_features=12", "dataset.n_train=200", "model.hidden=8",
             "train.epochs=3"]
WIDE_MLP = ["dataset.n_samples=300", "dataset.n_features=64", "dataset.n_train=200", "train.epochs=3"]
SMALL_BINARY = ["dataset.n_features=6", "dataset.n_per_class=150", "dataset.n_train_per_class=100",
                "model.hidden=8", "train.epochs=3"]


def _grid(registry, experiment, sets, **kwargs):
    return build_grid(registry, experiment, sets=sets, **kwargs)


def _single(config, registry):
    import torch

    state = build_state(config, registry, torch.device("cpu"))
    train(state, Recorder(state.history, lambda rows: None))
    return state


def _stacked(configs, registry):
    import torch

    states = [build_state(c, registry, torch.device("cpu")) for c in configs]
    stack = stack_states(states)
    factory = registry.get("optimizer", configs[0].optimizer.name).extras.get("vectorized")
    step = stacked([s.optimizer for s in states], [leaf.detach() for leaf in stack.leaves], factory)
    recorder = StackRecorder([s.history for s in states], [lambda rows: None] * len(states))
    train_stack(stack, step, recorder)
    stack.copy_back()
    return states, recorder


def _close(a: float, b: float, floor: float = 1e-6) -> bool:
    return abs(a - b) <= RTOL * max(abs(a), floor)


def assert_same_runs(single, stacked_state, of_largest: float = 0.0):
    """Every curve point and every final parameter of the stacked point equals the single run's.
    ``of_largest``: parameters may also differ by this share of their tensor's largest value
    (Adam on wide layers, below)."""
    assert set(single.history.curves) == set(stacked_state.history.curves)
    for name, points in single.history.curves.items():
        got = stacked_state.history.curves[name]
        assert [e for e, _ in got] == [e for e, _ in points], name
        bad = [(e, a, b) for (e, a), (_, b) in zip(points, got) if not _close(a, b)]
        assert not bad, f"{name}: {bad[:3]}"
    mine = dict(stacked_state.model.named_parameters())
    for name, p in single.model.named_parameters():
        q = mine[name].detach().flatten().tolist()
        slack = of_largest * float(p.detach().abs().max())
        assert all(_close(a, b) or abs(a - b) <= slack for a, b in zip(p.detach().flatten().tolist(), q)), name


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


CASES = {
    "linear": ("linear", ["seed=0,1,2", "optimizer.lr=0.01,0.05", "train.epochs=300"]),
    "quadratic-param": ("quadratic-param", ["seed=0,1", "optimizer.lr=2e-5,1e-5", "train.epochs=400"]),
    "quadratic-linear": ("quadratic-linear", ["seed=0,1", "optimizer.lr=2e-5,4e-5", "train.epochs=400"]),
    "mlp-regression": ("mlp-regression", ["seed=0,1", "optimizer.lr=0.0002,0.001", *SMALL_MLP]),
    "binary": ("binary", ["seed=0,1", "optimizer.lr=0.0002,0.001", *SMALL_BINARY]),
    # 64x32 and wider layers take regfw's own backward, their weights kept (N, in, out) in memory
    "mlp-regression, wide layers": ("mlp-regression", ["seed=0,1", "optimizer.lr=0.0002,0.001", "model.hidden=32",
                                                       *WIDE_MLP]),
    # Adam divides each gradient by its own running size, so float rounding in a small gradient moves
    # a weight by a share of lr: on a 64x48 layer its weights differ from the single run's by up to
    # 1e-5 of the layer's largest weight (measured 9.9e-6 after 12 steps; autograd's own baddbmm
    # backward gave the same). Curves still within RTOL.
    "adam, wide layers": ("mlp-regression", ["seed=0,1", "optimizer=adam", "optimizer.lr=0.001,0.01", "model.hidden=48",
                                             *WIDE_MLP], 1e-4),
    "adam": ("linear", ["seed=0,1", "optimizer=adam", "optimizer.lr=0.1,0.01", "optimizer.weight_decay=0,0.1",
                        "train.epochs=200"]),
    "adamw": ("linear", ["seed=0,1", "optimizer=adamw", "optimizer.lr=0.1,0.01", "train.epochs=200"]),
    "rmsprop": ("linear", ["seed=0,1", "optimizer=rmsprop", "optimizer.momentum=0,0.5",
                           "optimizer.weight_decay=0,0.01", "train.epochs=200"]),
    "sgd-momentum": ("linear", ["seed=0,1", "optimizer.momentum=0,0.9", "optimizer.weight_decay=0,0.01",
                                "train.epochs=200"]),
    "lion (a plugin's stacked form)": ("sine", ["seed=0,1", "optimizer.lr=0.01,0.02",
                                                "optimizer.weight_decay=0,0.1", "train.epochs=100"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_stacked_point_equals_its_single_run(registry, case):
    experiment, sets, *of_largest = CASES[case]
    if case.startswith("lion") and "sine" not in registry.names("experiment"):
        pytest.skip("the example plugin is not installed")
    configs = [p.config for p in _grid(registry, experiment, sets).points]
    # Points differ in seed (weights, data, shuffle order) and in the optimizer's numbers.
    assert len({c.seed for c in configs}) > 1 and len(configs) >= 4
    states, recorder = _stacked(configs, registry)
    assert not recorder.dead
    for config, state in zip(configs, states):
        assert_same_runs(_single(config, registry), state, *of_largest)


@pytest.mark.parametrize("axis", ["seed=0,3", "optimizer.lr=0.001,0.002"])
def test_per_point_shuffling_follows_each_points_own_generator(registry, axis):
    # Different seeds: own data and own order per point. One seed: the data is shared, stored
    # once, and each point still draws its order from its own generator. Batches of 40 from 200
    # rows: a wrong order anywhere would change the curves.
    sets = [axis, *SMALL_MLP[:-1], "train.epochs=2", "train.batch_size=40"]
    configs = [p.config for p in _grid(registry, "mlp-regression", sets).points]
    states, _ = _stacked(configs, registry)
    for config, state in zip(configs, states):
        assert_same_runs(_single(config, registry), state)


def test_a_diverging_point_dies_alone(registry):
    configs = [p.config for p in _grid(registry, "linear", ["optimizer.lr=0.01,10", "train.epochs=200"]).points]
    states, recorder = _stacked(configs, registry)
    assert list(recorder.dead) == [1]
    assert "diverged at epoch" in str(recorder.dead[1])
    assert states[0].history.epochs_done == 200 and math.isfinite(states[0].history.final()["train_loss"])
    assert states[1].history.epochs_done == recorder.dead[1].epoch < 200
    assert_same_runs(_single(configs[0], registry), states[0])


FALLBACKS = """
from regfw import Param, hookimpl

SIZE = Param(None, type=int, min=1)


def make_bn(in_features, out_features):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))


def make_branchy(in_features, out_features):
    import torch

    class Branchy(torch.nn.Linear):
        def forward(self, x):
            out = super().forward(x)
            return out if out.mean() > 0 else -out  # data-dependent control flow

    return Branchy(1, 1)


CENTRED = []  # one class for every point: models of one class stack


def make_centred(in_features, out_features):
    import torch

    if not CENTRED:
        class Centred(torch.nn.Module):  # elementwise ops only: without vmap it runs, with other values
            def __init__(self):
                super().__init__()
                self.w, self.b = torch.nn.Parameter(torch.randn(1, 1)), torch.nn.Parameter(torch.zeros(1, 1))

            def forward(self, x):
                return self.w * (x - x.mean(0)) + self.b  # mixes a batch's rows: dim 0 must be the batch

        CENTRED.append(Centred)
    return CENTRED[0]()


def make_mysgd(parameters, lr):
    import torch

    class MySGD(torch.optim.SGD):
        pass

    return MySGD(parameters, lr=lr)


@hookimpl
def register_models(register):
    register("bn", make_bn, params={"in_features": SIZE, "out_features": SIZE})
    register("branchy", make_branchy, params={"in_features": SIZE, "out_features": SIZE})
    register("centred", make_centred, params={"in_features": SIZE, "out_features": SIZE})


@hookimpl
def register_optimizers(register):
    register("mysgd", make_mysgd, params={"lr": 0.01})
"""


@pytest.fixture
def odd_registry(fake_dist):
    fake_dist("acme-odd", {"acme_odd": FALLBACKS}, {"acme-odd": "acme_odd"})
    return load_plugins().registry


@pytest.mark.parametrize("swap, expected", [
    ({"model": "bn"}, ("buffers", "vmap")),
    ({"model": "branchy"}, ("vmap",)),
    ({"optimizer": "mysgd"}, ("no stacked form",)),
])
def test_points_that_cannot_stack_say_why(odd_registry, swap, expected):
    grid = _grid(odd_registry, "linear", ["seed=0,1", "train.epochs=5"], swaps=swap)
    plan = plan_buckets(grid.points, odd_registry)
    assert plan.buckets == []
    (reason, positions), = plan.reasons().items()
    assert positions == [0, 1]
    assert any(word in reason for word in expected), reason


@pytest.mark.parametrize("experiment, sets", [
    ("linear", ["seed=0,1"]), ("quadratic-param", ["seed=0,1"]), ("quadratic-linear", ["seed=0,1"]),
    ("mlp-regression", ["seed=0,1", *SMALL_MLP]), ("binary", ["seed=0,1", *SMALL_BINARY])])
def test_builtin_models_stack_without_vmap(registry, experiment, sets):
    """Their ops broadcast over the points (nn.Linear through baddbmm): no vmap bookkeeping per step."""
    import torch

    states = [build_state(p.config, registry, torch.device("cpu")) for p in _grid(registry, experiment, sets).points]
    stack = stack_states(states)
    stack.forward(stack.x, stack.y)
    assert stack.direct


def test_a_model_that_mixes_a_batchs_rows_keeps_vmap_and_equals_its_single_runs(odd_registry):
    """Without vmap, ``x.mean(0)`` would average over the points: the first batch shows the
    difference, the stack keeps vmap, and every point still equals its single run."""
    configs = [p.config for p in _grid(odd_registry, "linear", ["seed=0,1", "optimizer.lr=0.01,0.05",
                                                                 "train.epochs=50"], swaps={"model": "centred"}).points]
    import torch

    probe_states = [build_state(c, odd_registry, torch.device("cpu")) for c in configs]
    probe = stack_states(probe_states)
    probe.forward(probe.x, probe.y)
    assert not probe.direct
    states, recorder = _stacked(configs, odd_registry)
    for config, state in zip(configs, states):
        assert_same_runs(_single(config, odd_registry), state)


def test_buckets_follow_the_key_and_the_size_limit(registry):
    sets = ["seed=0,1,2", "optimizer.lr=0.01,0.1", "dataset.noise=0.5,1", "train.epochs=5"]
    grid = _grid(registry, "linear", sets)
    plan = plan_buckets(grid.points, registry)
    noise = [{grid.points[i].config.dataset.params["noise"] for i in b} for b in plan.buckets]
    assert sorted(len(b) for b in plan.buckets) == [6, 6] and all(len(n) == 1 for n in noise)
    small = plan_buckets(grid.points, registry, max_bucket=4)
    assert sorted(len(b) for b in small.buckets) == [3, 3, 3, 3] and not small.alone
    tiny = plan_buckets(grid.points, registry, budget=1)  # nothing fits: every point runs alone
    assert not tiny.buckets and len(tiny.alone) == 12 and "budget" in tiny.alone[0][1]
    formula = plan_buckets(_grid(registry, "linear", ["seed=0,1", "train.grad=formula"]).points, registry)
    assert not formula.buckets and "formula" in formula.alone[0][1]


def _children(uri, experiment, sweep_id):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`{T.SWEEP_ID}` = '{sweep_id}'", max_results=1000)
    children = [r for r in runs if r.data.tags.get(T.ROLE) != T.ROLE_SWEEP]
    return client, sorted(children, key=lambda r: int(r.data.tags[T.SWEEP_INDEX]))


@pytest.mark.slow
def test_vectorized_children_record_what_sequential_children_record(registry, store):
    sets = ["seed=0,1", "optimizer.lr=0.01,10", "train.epochs=60"]
    plain = run_sweep(_grid(registry, "linear", sets), store, "plain")
    fast = run_sweep(_grid(registry, "linear", sets), store, "fast", vectorize=True)
    statuses = [r.status for r in plain.results]
    assert [r.status for r in fast.results] == statuses and sorted(statuses) == ["FAILED"] * 2 + ["FINISHED"] * 2
    client, a_runs = _children(store, "plain", plain.sweep_id)
    _, b_runs = _children(store, "fast", fast.sweep_id)
    for a, b in zip(a_runs, b_runs):
        assert a.data.params == b.data.params and a.info.status == b.info.status
        assert set(b.data.tags) - set(a.data.tags) == {T.BUCKET}
        assert b.data.tags[T.BUCKET] == "bucket 1, 4 points"
        assert a.data.tags.get(T.FAILURE) == b.data.tags.get(T.FAILURE)
        assert set(a.data.metrics) == set(b.data.metrics)
        for key in a.data.metrics:
            if key.endswith("train_seconds"):
                continue
            history = [(m.step, m.value) for m in client.get_metric_history(a.info.run_id, key)]
            other = [(m.step, m.value) for m in client.get_metric_history(b.info.run_id, key)]
            assert [s for s, _ in history] == [s for s, _ in other], key
            assert all(_close(x, y) or (math.isnan(x) and math.isnan(y)) or x == y
                       for (_, x), (_, y) in zip(history, other)), key
        names = lambda run: sorted(f.path for f in client.list_artifacts(run.info.run_id))  # noqa: E731
        assert names(a) == names(b)


@pytest.mark.slow
def test_cli_prints_buckets_and_fallback_reasons(invoke, store):
    result = invoke("sweep", "linear", "--seeds", "0-2", "--set", "train.epochs=20", "--set", "dataset.noise=0.5,1,2",
                    "--vectorize", "--max-bucket", "2", "--tracking-uri", store)
    assert result.exit_code == 0, result.output
    assert "vectorized: 6 points in 3 buckets of 2, 2, 2" in result.output
    lines = [line for line in result.output.splitlines() if "not vectorized" in line]
    assert lines == ["  not vectorized, points 3,6,9: left over after cutting its group into buckets"]
    from_run = invoke("run", "linear", "--sweep", "--vectorize", "--set", "seed=0,1", "--epochs", "5",
                      "--tracking-uri", store)
    assert from_run.exit_code == 0 and "vectorized: 2 points in 1 bucket of 2" in from_run.output


@pytest.mark.parametrize("args, message", [
    (["sweep", "linear", "--seeds", "0,1", "--max-bucket", "2"], "--max-bucket goes with --vectorize"),
    (["run", "linear", "--vectorize"], "--vectorize goes with --sweep"),
])
def test_refusals_are_one_line_and_create_no_run(invoke, store, args, message):
    result = invoke(*args, "--tracking-uri", store)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"regfw: error: {message}"), result.stderr
    assert "Traceback" not in result.output


def _children_training(path) -> int:
    import sqlite3
    from contextlib import closing

    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute("SELECT COUNT(*) FROM (SELECT t.run_uuid FROM tags t JOIN metrics m ON m.run_uuid = "
                              f"t.run_uuid WHERE t.key = '{T.BUCKET}' AND m.key = ? GROUP BY t.run_uuid "
                              "HAVING COUNT(*) >= 2)", (stored("train_loss"),)).fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigterm_ends_every_child_of_a_bucket_killed_with_its_metrics(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("regfw")), "sweep", "linear", "--seeds", "0-2",
                             "--epochs", "50000000", "--log-every", "100", "--vectorize", "--tracking-uri", uri,
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and _children_training(tmp_path / "mlflow.db") < 3:
            time.sleep(1)
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended early ({proc.returncode}): {proc.communicate()[1]}")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("linear").experiment_id])
    children = [r for r in runs if T.PARENT in r.data.tags]
    assert len(children) == 3 and {c.info.status for c in children} == {"KILLED"}
    for child in children:  # flushed on the way out: the curve so far is in the store
        done = int(child.data.tags[T.EPOCHS_DONE])
        assert child.data.tags[T.FAILURE] == f"interrupted at epoch {done}"
        history = client.get_metric_history(child.info.run_id, stored("train_loss"))
        assert history and max(m.step for m in history) <= done and history[-1].value < history[0].value


@pytest.mark.slow
def test_jobs_and_vectorize_share_the_buckets_between_workers(registry, store):
    grid = _grid(registry, "linear", ["seed=0,1,2,3", "optimizer.lr=0.01,10", "train.epochs=40"])
    result = run_sweep(grid, store, "linear", jobs=2, vectorize=True)
    assert sorted(r.index for r in result.results) == list(range(8)) and result.status == "FAILED"
    assert sorted(r.status for r in result.results) == ["FAILED"] * 4 + ["FINISHED"] * 4
    _, children = _children(store, "linear", result.sweep_id)
    assert sorted(c.data.tags[T.BUCKET] for c in children) == ["bucket 1, 4 points"] * 4 + ["bucket 2, 4 points"] * 4
    diverged = [c for c in children if c.info.status == "FAILED"]
    assert all(float(c.data.params["optimizer.lr"]) == 10 for c in diverged)
    assert all("diverged at epoch" in c.data.tags[T.FAILURE] for c in diverged)


@pytest.mark.parametrize("case", ["adam", "rmsprop", "mlp-regression"])  # SGD: tests/test_tune.py
def test_points_that_leave_the_stack_mid_training_leave_the_others_unchanged(registry, case):
    # What a search's pruner does: after epoch `cut`, the odd rows leave the stack (its parameters,
    # optimizer state and per-point data are cut to the even rows); those must still equal their
    # single runs, and the ones that left must hold the values their single run has after `cut` epochs.
    import torch

    experiment, sets, *_ = CASES[case]
    configs = [p.config for p in _grid(registry, experiment, sets).points]
    epochs = configs[0].train["epochs"]
    cut = max(1, epochs // 4)
    states = [build_state(c, registry, torch.device("cpu")) for c in configs]
    stack = stack_states(states)
    step = stacked([s.optimizer for s in states], [leaf.detach() for leaf in stack.leaves])
    recorder = StackRecorder([s.history for s in states], [lambda rows: None] * len(states))
    staying, leaving = list(range(0, len(states), 2)), list(range(1, len(states), 2))

    def leave(epoch):
        if epoch == cut:
            recorder.drain()
            stack.copy_back(leaving)
            stack.keep(staying)
            step.keep(staying, [leaf.detach() for leaf in stack.leaves])
            recorder.leave({i: cut for i in leaving}, stack.positions)

    train_stack(stack, step, recorder, on_epoch_end=leave)
    stack.copy_back()
    assert stack.positions == staying and stack.size == len(staying)
    assert stack.row_epochs == len(states) * cut + len(staying) * (epochs - cut)
    for i in staying:
        assert_same_runs(_single(configs[i], registry), states[i])
    shorter = [s for s in sets if not s.startswith("train.epochs=")] + [f"train.epochs={cut}"]
    short = [p.config for p in _grid(registry, experiment, shorter).points]
    for i in leaving:
        assert max(e for e, _ in states[i].history.curves["train_loss"]) <= cut
        alone = _single(short[i], registry)
        for a, b in zip(alone.model.parameters(), states[i].model.parameters()):
            assert torch.allclose(a.detach(), b.detach(), rtol=RTOL, atol=RTOL * float(a.detach().abs().max()))
