"""`regfw tune`: the space grammar and every bad input (one line, no run), then real Optuna studies
in real SQLite storage beside a real SQLite run store: the record, resuming, pruning, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regfw.errors import RegfwError
from regfw.store.keys import stored
from regfw.tune.space import parse_dimension

REGFW = str(Path(sys.executable).with_name("regfw"))
LR = "optimizer.lr=log(1e-5,1e-4)"
MOMENTUM = "optimizer.momentum=float(0,0.95)"


# -- the grammar --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, kind, low, high, log, step", [
    ("optimizer.lr=log(1e-5,1e-1)", "float", 1e-5, 0.1, True, None),
    ("optimizer.lr=float(1e-5,1e-1,log)", "float", 1e-5, 0.1, True, None),
    ("optimizer.momentum=float(0,0.9,step=0.1)", "float", 0.0, 0.9, False, 0.1),
    ("train.epochs=int(2,64,log)", "int", 2, 64, True, None),
    ("train.epochs=int(2,10,step=2)", "int", 2, 10, False, 2),
])
def test_numeric_forms_parse(text, kind, low, high, log, step):
    dim = parse_dimension(text)
    assert (dim.kind, dim.low, dim.high, dim.log, dim.step) == (kind, low, high, log, step)


def test_log_and_float_log_are_one_space():
    assert parse_dimension("optimizer.lr=log(1e-5,0.1)").canonical() == \
        parse_dimension("optimizer.lr=float(0.00001,1e-1,log)").canonical()


def test_choice_keeps_bracketed_lists_whole():
    dim = parse_dimension("model.hidden=choice([16],[32,32],64)")
    assert dim.choices == ("[16]", "[32,32]", "64")


def test_a_sampled_float_is_set_exactly():
    dim = parse_dimension("optimizer.lr=log(1e-5,1e-1)")
    assert dim.as_set(0.00012345678901234) == "optimizer.lr=0.00012345678901234"


@pytest.mark.parametrize("text, words", [
    ("optimizer.lr=log(0,1)", "LOW > 0"),
    ("optimizer.lr=float(0.1,0.01)", "LOW must be below HIGH"),
    ("optimizer.lr=float(0.1,0.1)", "LOW must be below HIGH"),
    ("optimizer.lr=choice()", "at least one value"),
    ("optimizer.lr=uniform(0,1)", "unknown form"),
    ("optimizer.lr=float(a,1)", "expected a number"),
    ("train.epochs=int(1.5,4)", "expected an integer"),
    ("optimizer.lr=float(0,1,log,step=0.1)", "do not combine"),
    ("optimizer.lr=float(0,1,step=2)", "wider than the range"),
    ("optimizer.lr", "KEY=FORM"),
])
def test_bad_forms_are_one_line(text, words):
    with pytest.raises(RegfwError, match=words.replace("(", r"\(").replace(">", ">")):
        parse_dimension(text)


# -- bad input through the CLI: one line, exit 1, no store -------------------------------------
@pytest.mark.parametrize("args, words", [
    (["--space", "optimizer.lrr=log(1e-5,1e-1)"], "unknown key"),
    (["--space", "optimizer.momentum=float(-1,0.5)"], "must be at least"),
    (["--space", "dataset.n_samples=float(10,100)"], "is an integer"),
    (["--space", "train.epochs=int(2,8)"], "also fixed"),
    (["--space", "train.shuffle=float(0,1)"], "not a number"),
    (["--space", "optimizer.lr=float(0.1,0.01)"], "LOW must be below HIGH"),
    (["--space", "optimizer.lr=log(-1,1)"], "LOW > 0"),
    (["--space", "optimizer.lr=choice()"], "at least one value"),
    (["--space", "model.hidden=choice(8,x)"], "model"),
    ([], "at least one --space"),
    (["--space", LR, "--set", "optimizer.lr=0.1"], "also fixed"),
    (["--space", LR, "--space", "optimizer.lr=float(0,1)"], "given twice"),
    (["--space", LR, "--metric", "final_test_accuracy"], "does not record it"),
    (["--space", LR, "--direction", "up"], "--direction must be one of"),
    (["--space", LR, "--sampler", "bayes"], "--sampler must be one of"),
    (["--space", LR, "--pruner", "always"], "--pruner must be one of"),
    (["--space", LR, "--pruner", "median", "--metric", "train_seconds"], "needs a metric with a curve"),
    (["--space", LR, "--sampler", "grid"], "needs a grid"),
    (["--space", LR, "--report-every", "3", "--log-every", "2"], "not a multiple"),
    (["--space", LR, "--batch", "4"], "goes with --vectorize"),
    (["--space", LR, "--study", " "], "--study needs a name"),
    (["--space", LR, "--ray-address", "auto"], "--ray-address goes with --backend ray"),
    (["--space", "optimizer.momentum=choice(0.5,-1)"], "must be at least"),
])
def test_bad_input_is_one_line_and_no_run(invoke, tmp_path, args, words):
    store = tmp_path / "store" / "mlflow.db"
    experiment = "quadratic-linear" if "model.hidden" not in " ".join(args) else "mlp-regression"
    result = invoke("tune", experiment, *args, "--tracking-uri", f"sqlite:///{store}", "--epochs", "4")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("regfw: error: ") and words in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr and "unexpected" not in lines[0]
    assert not store.parent.exists(), "nothing may be written for bad input"


# -- real studies ---------------------------------------------------------------------------------
def _tune(store, *args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}
    return subprocess.run([REGFW, "tune", "quadratic-linear", "--space", LR, "--space", MOMENTUM,
                           "--tracking-uri", store, *map(str, args)],
                          capture_output=True, text=True, env=env | {"OMP_NUM_THREADS": "1"}, timeout=timeout)


def _study(store, name):
    import optuna

    folder = Path(store.removeprefix("sqlite:///")).parent
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'optuna.db'}")


def _runs(store, experiment="quadratic-linear"):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


def _wait_for_runs(store, condition, seconds=120, every=0.5) -> None:
    """Poll the run store until ``condition(runs)`` holds (or ``seconds`` pass): a tune process at work."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(every)
        try:
            runs = _runs(store)
        except Exception:  # noqa: BLE001 - the store is not made yet
            continue
        if condition(runs):
            return


@pytest.mark.slow
def test_a_study_is_recorded_reproducible_and_continued(store, tmp_path):
    first = _tune(store, "--trials", 3, "--epochs", 30, "--seed", 7, "--study", "s")
    assert first.returncode == 0, first.stderr
    study = _study(store, "s")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    runs = _runs(store)
    parent = next(r for r in runs if r.data.tags.get("regfw.role") == "study")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    assert {r.data.tags["regfw.trial_state"] for r in children} == {"complete"}
    assert parent.info.status == "FINISHED" and parent.data.params["tune.space.optimizer.lr"] == LR.split("=", 1)[1]
    by_trial = {int(r.data.tags["regfw.trial"]): r for r in children}
    for trial in study.trials:  # the study and MLflow agree on every trial's params and value
        run = by_trial[trial.number]
        assert float(run.data.params["optimizer.lr"]) == trial.params["optimizer.lr"]
        assert run.data.metrics[stored("final_train_loss")] == pytest.approx(trial.value, rel=1e-6)
    best = study.best_trial
    assert parent.data.tags["regfw.study_best_run"] == best.user_attrs["regfw.run_id"]
    assert parent.data.metrics[stored("best_value")] == pytest.approx(best.value, rel=1e-6)
    assert f"run {best.user_attrs['regfw.run_id']}" in first.stdout
    command = next(line.split("repeat: ", 1)[1] for line in first.stdout.splitlines() if "repeat: " in line)
    assert f"optimizer.lr={best.params['optimizer.lr']!r}" in command

    # The same seed in another store draws the same trials.
    other = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    again = _tune(other, "--trials", 3, "--epochs", 30, "--seed", 7, "--study", "s")
    assert again.returncode == 0, again.stderr
    assert [t.params for t in _study(other, "s").trials] == [t.params for t in study.trials]

    # The same name continues the study under the same parent; another space is refused.
    more = _tune(store, "--trials", 2, "--epochs", 30, "--seed", 8, "--study", "s")
    assert more.returncode == 0, more.stderr
    assert len(_study(store, "s").trials) == 5
    parents = [r for r in _runs(store) if r.data.tags.get("regfw.role") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    listed = subprocess.run([REGFW, "runs", "quadratic-linear", "--study", "s", "--tracking-uri", store],
                            capture_output=True, text=True)
    rows = [line.split() for line in listed.stdout.splitlines()[2:]]
    assert len(rows) == 5 and rows[0][0] == str(_study(store, "s").best_trial.number)
    values = [float(r[-2]) for r in rows]
    assert values == sorted(values)
    changed = _tune(store, "--trials", 1, "--epochs", 30, "--study", "s", "--space", "seed=int(0,3)")
    assert changed.returncode == 1 and "exists with another search" in changed.stderr
    assert "seed was not searched" in changed.stderr
    assert len(_study(store, "s").trials) == 5


@pytest.mark.slow
@pytest.mark.parametrize("ways", [
    pytest.param([], id="here"),
    pytest.param(["--jobs", 2], id="jobs"),  # the workers ask the tune process at each report point
    pytest.param(["--backend", "ray", "--jobs", 2], id="ray", marks=pytest.mark.xdist_group("ray")),
    pytest.param(["--jobs", 2, "--vectorize", "--batch", 2], id="jobs-stacked"),  # a pruned row leaves its stack
    pytest.param(["--backend", "ray", "--jobs", 2, "--vectorize", "--batch", 2], id="ray-stacked",
                 marks=pytest.mark.xdist_group("ray")),
])
def test_pruned_trials_stop_early_with_their_curve(store, ways):
    if "ray" in ways:
        pytest.importorskip("ray")
    result = _tune(store, "--trials", 10, "--epochs", 400, "--seed", 0, "--study", "p", "--pruner", "median",
                   "--report-every", 20, "--sampler", "random", *ways)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    trials = _study(store, "p").trials
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, [t.state.name for t in trials]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    for trial in pruned:
        run = client.get_run(trial.user_attrs["regfw.run_id"])
        epoch = int(run.data.tags["regfw.pruned_at_epoch"])
        assert run.info.status == "FINISHED" and run.data.tags["regfw.trial_state"] == "pruned"
        assert int(run.data.tags["regfw.epochs_done"]) == epoch < 400
        curve = client.get_metric_history(run.info.run_id, stored("train_loss"))
        assert max(m.step for m in curve) == epoch
        assert sorted(trial.intermediate_values) == list(range(20, epoch + 1, 20))
    for trial in trials:  # every trial reported at its report points, wherever it trained
        assert sorted(trial.intermediate_values)[:5] == [20, 40, 60, 80, 100]
    runs = {int(r.data.tags["regfw.trial"]): r for r in _runs(store) if r.data.tags.get("regfw.trial")}
    if ways == ["--jobs", 2]:  # one pool for the whole search: a trial asked as another ends takes its worker
        assert len({runs[n].data.tags["regfw.pid"] for n in runs}) == 2
    if ways:  # a trial starts as soon as it is asked, not after a wait for the runs of earlier trials
        size = 4 if "--vectorize" in ways else 2
        for first in range(size, 10, size):
            started = min(runs[n].info.start_time for n in range(first, min(first + size, 10)))
            ended = max(runs[n].info.end_time for n in range(first - size, first))
            assert started - ended < 30_000, (first, started - ended)


@pytest.mark.slow
@pytest.mark.parametrize("ways", [pytest.param([], id="here"),  # workers waiting for a verdict stop too
                                  pytest.param(["--jobs", "2", "--pruner", "median", "--report-every", "200"], id="jobs")])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_search_leaves_nothing_running(store, signum, ways):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}
    proc = subprocess.Popen([REGFW, "tune", "quadratic-linear", "--space", LR, "--space", MOMENTUM,
                             "--tracking-uri", store, "--trials", "50", "--epochs", "200000", "--study", "x", *ways],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env | {"OMP_NUM_THREADS": "1"})
    try:
        _wait_for_runs(store, lambda runs: any(r.data.tags.get("regfw.trial") for r in runs))  # a trial trains
        time.sleep(1.0)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    states = [t.state.name for t in _study(store, "x").trials]
    assert states and "RUNNING" not in states and states[-1] == "FAIL"
    runs = _runs(store)
    assert all(r.info.status != "RUNNING" for r in runs)
    assert {r.info.status for r in runs if r.data.tags.get("regfw.role") == "study"} == {"KILLED"}


def _record(store, name, experiment="quadratic-linear"):
    """The study's trials and their child runs: what a serial and a stacked tune must agree on."""
    study = _study(store, name)
    runs = _runs(store, experiment)
    parent = next(r for r in runs if r.data.tags.get("regfw.role") == "study")
    children = {int(r.data.tags["regfw.trial"]): r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    return study, parent, children


@pytest.mark.slow
def test_stacked_trials_record_what_serial_trials_record(store, tmp_path):
    # The same seed draws the same trials (TPE's first trials are random), so each stacked trial is
    # also checked against the same trial trained alone: equal within docs/comparing.md's 1e-5.
    serial = _tune(store, "--trials", 3, "--epochs", 40, "--seed", 3, "--study", "s")
    assert serial.returncode == 0, serial.stderr
    other = f"sqlite:///{tmp_path / 'stacked' / 'mlflow.db'}"
    stacked = _tune(other, "--trials", 3, "--epochs", 40, "--seed", 3, "--study", "s", "--vectorize")
    assert stacked.returncode == 0, stacked.stderr
    assert "stacked: 3 of 3 trials in 1 program of 3" in stacked.stdout
    s_study, s_parent, s_children = _record(store, "s")
    v_study, v_parent, v_children = _record(other, "s")
    assert [t.state.name for t in v_study.trials] == [t.state.name for t in s_study.trials] == ["COMPLETE"] * 3
    assert sorted(v_children) == sorted(s_children) == [0, 1, 2]
    for s_trial, v_trial in zip(s_study.trials, v_study.trials):
        assert v_trial.params == s_trial.params
        assert v_trial.value == pytest.approx(s_trial.value, rel=1e-5)
        run = v_children[v_trial.number]
        assert run.info.status == "FINISHED" and run.data.tags["regfw.trial_state"] == "complete"
        assert run.data.tags.get("regfw.bucket", "").startswith("bucket 1, 3 points")
        assert v_trial.user_attrs["regfw.run_id"] == run.info.run_id
        assert run.data.metrics[stored("final_train_loss")] == pytest.approx(v_trial.value, rel=1e-6)
        assert set(run.data.params) == set(s_children[s_trial.number].data.params)
    assert v_study.best_trial.number == s_study.best_trial.number
    assert v_parent.data.tags["regfw.study_best_run"] == v_study.best_trial.user_attrs["regfw.run_id"]
    assert v_parent.data.metrics[stored("best_value")] == pytest.approx(v_study.best_trial.value, rel=1e-6)
    assert v_parent.info.status == "FINISHED" and v_parent.data.tags["regfw.study_complete"] == "3"


@pytest.mark.slow
def test_a_pruned_trial_leaves_its_stack_and_stacked_trials_match_trials_run_alone(invoke, store):
    from regfw.vectorize import bucket_run

    result = invoke("tune", "quadratic-linear", "--space", LR, "--space", MOMENTUM, "--tracking-uri", store,
                    "--trials", 12, "--vectorize", "--batch", 6, "--pruner", "median", "--epochs", 400,
                    "--report-every", 20, "--seed", 0, "--study", "p")
    assert result.exit_code == 0, result.output
    study = _study(store, "p")
    second = study.trials[6:]  # the first stack ends with no complete trial to compare with: none is pruned
    assert [t.state.name for t in study.trials[:6]] == ["COMPLETE"] * 6
    pruned = [t for t in second if t.state.name == "PRUNED"]
    complete = [t for t in second if t.state.name == "COMPLETE"]
    assert pruned and complete, [t.state.name for t in second]
    at = {t.number: max(t.intermediate_values) for t in pruned}
    assert all(epoch < 400 for epoch in at.values())
    # A pruned row left the stack: the stack (its first six rows, then the six trials that took their
    # rows when they ended) trained each pruned trial up to its epoch only.
    assert bucket_run.LAST_TIMING.row_epochs == 400 * 6 + sum(at.values()) + 400 * len(complete)
    _, _, children = _record(store, "p")
    for trial in pruned:
        run = children[trial.number]
        assert run.info.status == "FINISHED" and run.data.tags["regfw.trial_state"] == "pruned"
        assert int(run.data.tags["regfw.pruned_at_epoch"]) == int(run.data.tags["regfw.epochs_done"]) == at[trial.number]
        assert sorted(trial.intermediate_values) == list(range(20, at[trial.number] + 1, 20))

    # The same params run alone (enqueue_trial fixes them, no pruner): the same values within 1e-5.
    kept, stopped = complete[0], pruned[0]
    study.enqueue_trial(kept.params)
    study.enqueue_trial(stopped.params)
    alone = _tune(store, "--trials", 2, "--epochs", 400, "--report-every", 20, "--seed", 0, "--study", "p")
    assert alone.returncode == 0, alone.stderr
    again = _study(store, "p").trials[12:]
    assert [t.params for t in again] == [kept.params, stopped.params]
    assert again[0].value == pytest.approx(kept.value, rel=1e-5)
    for epoch, value in stopped.intermediate_values.items():
        assert again[1].intermediate_values[epoch] == pytest.approx(value, rel=1e-5)

    # `regfw rerun --verify` of the pruned trial stops where it was pruned and reproduces what it recorded.
    rerun = invoke("rerun", stopped.user_attrs["regfw.run_id"], "--verify", "--tracking-uri", store)
    assert rerun.exit_code == 0, rerun.output
    assert f"pruned by its study after epoch {at[stopped.number]}: this rerun stops there too" in rerun.output
    assert "all equal within relative 1e-05" in rerun.output


@pytest.mark.slow
def test_a_refilled_stack_trains_trials_at_their_own_epochs_as_they_train_alone(invoke, store):
    # Adam (a step count per row), shuffled mini-batches (a shuffle per row) and a searched seed (data
    # per row): a trial takes a row as soon as another ends, and trains beside rows at other epochs.
    from mlflow import MlflowClient

    from regfw.vectorize import bucket_run

    result = invoke("tune", "linear", "--optimizer", "adam", "--space", "optimizer.lr=log(1e-3,1e-1)",
                    "--space", "seed=int(0,20)", "--set", "train.batch_size=16", "--trials", 12, "--epochs", 40,
                    "--seed", 1, "--vectorize", "--batch", 3, "--pruner", "median", "--report-every", 5,
                    "--tracking-uri", store, "--study", "r")
    assert result.exit_code == 0, result.output
    assert "refilled: a new trial takes each row as its trial ends, up to 3 at once" in result.output
    study, _, children = _record(store, "r", "linear")
    assert "PRUNED" in [t.state.name for t in study.trials] and len(children) == 12
    assert all(run.info.status == "FINISHED" for run in children.values())
    joined = {n: int(run.data.tags.get("regfw.bucket_joined_at", 0)) for n, run in children.items()}
    trained = {n: int(run.data.tags["regfw.epochs_done"]) for n, run in children.items()}
    # One stack trained every trial, each for its own epochs, nothing more: pruned rows left it.
    assert bucket_run.LAST_TIMING.row_epochs == sum(trained.values())
    assert len({run.data.tags["regfw.bucket"] for run in children.values()}) == 1

    def beside_another_epoch(n):  # some other row was at another epoch while trial n trained
        return any(joined[m] % 40 != joined[n] % 40 and joined[m] < joined[n] + 40 and joined[n] < joined[m] + trained[m]
                   for m in joined if m != n)

    mixed = [t for t in study.trials if t.state.name == "COMPLETE" and joined[t.number] and beside_another_epoch(t.number)]
    assert mixed, (joined, trained)
    rerun = invoke("rerun", children[mixed[-1].number].info.run_id, "--verify", "--tracking-uri", store)
    assert rerun.exit_code == 0, rerun.output
    assert "all equal within relative 1e-05" in rerun.output
    client = MlflowClient(tracking_uri=store)
    pruned = next(t for t in study.trials if t.state.name == "PRUNED" and joined[t.number] % 40)
    curve = client.get_metric_history(children[pruned.number].info.run_id, stored("train_loss"))
    assert max(m.step for m in curve) == trained[pruned.number] == max(pruned.intermediate_values)


@pytest.mark.slow
def test_ctrl_c_stops_a_refilled_stack_leaving_nothing_running(store):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}
    proc = subprocess.Popen([REGFW, "tune", "quadratic-linear", "--space", LR, "--space", MOMENTUM,
                             "--tracking-uri", store, "--trials", "200", "--epochs", "30000", "--vectorize",
                             "--batch", "2", "--study", "c"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env | {"OMP_NUM_THREADS": "1"})
    try:
        _wait_for_runs(store, lambda runs: any(  # until trials that took freed rows are training
            r.info.status == "RUNNING" and r.data.tags.get("regfw.bucket_joined_at") for r in runs), seconds=180)
        time.sleep(0.5)  # into the rows' training (seconds each), past the moment they joined
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    states = [t.state.name for t in _study(store, "c").trials]
    assert "RUNNING" not in states and states.count("COMPLETE") >= 2 and states[-1] == "FAIL"
    runs = _runs(store)
    assert all(r.info.status != "RUNNING" for r in runs)
    killed = [r for r in runs if r.info.status == "KILLED" and r.data.tags.get("regfw.trial")]
    assert killed and all(r.data.tags.get("regfw.bucket_joined_at") for r in killed)
    assert all(r.data.tags["regfw.failure"].startswith("interrupted at epoch") for r in killed)


@pytest.mark.slow
def test_stacked_trials_of_another_model_size_stack_apart_or_run_alone(store):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}
    result = subprocess.run([REGFW, "tune", "mlp-regression", "--space", "optimizer.lr=log(1e-3,1e-1)",
                             "--space", "model.hidden=choice([8],[16])", "--trials", "3", "--epochs", "3",
                             "--seed", "2", "--vectorize", "--tracking-uri", store, "--study", "m"],
                            capture_output=True, text=True, env=env | {"OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    study, _, children = _record(store, "m", "mlp-regression")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3 and sorted(children) == [0, 1, 2]
    sizes = [t.params["model.hidden"] for t in study.trials]
    for trial in study.trials:  # a trial stacks exactly when another trial of its batch has its model size
        shared = sizes.count(trial.params["model.hidden"]) > 1
        assert ("regfw.bucket" in children[trial.number].data.tags) == shared, (sizes, result.stdout)
        assert (f"alone, trial {trial.number}: no other point shares its model" in result.stdout) == (not shared)


def _workers(pid: int) -> list[int]:
    """The spawned worker processes of process ``pid`` (not multiprocessing's resource tracker)."""
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text():
                found.append(int(child))
        except OSError:
            pass
    return found


@pytest.mark.slow
def test_jobs_a_dead_worker_fails_its_trial_with_the_reason_and_the_search_goes_on(store):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}
    proc = subprocess.Popen([REGFW, "tune", "quadratic-linear", "--space", LR, "--space", MOMENTUM, "--tracking-uri",
                             store, "--trials", "3", "--jobs", "2", "--epochs", "6000", "--seed", "1", "--study", "j"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env | {"OMP_NUM_THREADS": "1"})
    try:
        _wait_for_runs(store, lambda runs: any(  # until the first wave's trials train in their workers
            r.data.tags.get("regfw.trial") and r.info.status == "RUNNING" for r in runs), seconds=180, every=0.3)
        killed = _workers(proc.pid)
        assert killed, "no worker process found"
        os.kill(killed[0], signal.SIGKILL)  # our own test's worker, by pid
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    trials = _study(store, "j").trials
    assert len(trials) == 3 and "RUNNING" not in [t.state.name for t in trials]
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and all("worker process died" in t.user_attrs["regfw.failure"] for t in failed), out
    assert trials[2].state.name == "COMPLETE", out  # the next wave trained on
    runs = _runs(store)
    assert all(r.info.status != "RUNNING" for r in runs)
    for trial in failed:  # a run the dead worker had started ends FAILED with the reason
        run_id = trial.user_attrs.get("regfw.run_id")
        if run_id:
            run = next(r for r in runs if r.info.run_id == run_id)
            assert run.info.status == "FAILED" and "worker process died" in run.data.tags["regfw.failure"]


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_trials_run_as_ray_tasks_on_a_local_instance(store):
    pytest.importorskip("ray")
    result = _tune(store, "--trials", 2, "--epochs", 30, "--seed", 5, "--study", "r", "--backend", "ray", "--jobs", 2)
    assert result.returncode == 0, result.stderr
    assert "Ray: a local Ray instance" in result.stdout and "as Ray tasks" in result.stdout
    study = _study(store, "r")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    _, parent, children = _record(store, "r")
    assert sorted(children) == [0, 1] and all(r.info.status == "FINISHED" for r in children.values())
    for trial in study.trials:
        assert children[trial.number].data.metrics[stored("final_train_loss")] == pytest.approx(trial.value, rel=1e-6)
    assert parent.info.status == "FINISHED"
