"""Issue 18's outside probes, provoked for real: a short-point sweep stopped by a signal, --config
files that are not configurations, stores no run can be kept in, meaningless combinations and
misleading messages. Every user error is one line `regfw: error: ...`, fast, and leaves no run.
See docs/reliability.md for the list."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REGFW = str(Path(sys.executable).with_name("regfw"))


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}
    return env | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"} | extra


def one_line_error(result) -> str:
    """The single stderr line of a refused command (and no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0 if hasattr(result, "exit_code") else result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("regfw: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def runs_in(uri: str) -> list[tuple[str, str]]:
    """``(run_id, status)`` of every run in a SQLite store, read straight from the file."""
    path = uri[len("sqlite:///"):]
    if not Path(path).exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT run_uuid, status FROM runs").fetchall()
        except sqlite3.OperationalError:  # no tables yet
            return []


def tags_of(uri: str, run_id: str) -> dict:
    with sqlite3.connect(uri[len("sqlite:///"):]) as db:
        return dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall())


# -- 1. a sweep of short points stops on Ctrl-C / SIGTERM ------------------------------------------
STOP_WITHIN = 3.0  # seconds from the signal to the exit; measured 0.3-2.2 s on a loaded 2-core machine


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sweep_of_short_points_stops_on_a_signal(tmp_path, store, signum, code):
    """`--jobs 1` with 3-epoch points: the signal nearly always lands while a point is being
    written (held back there); the sweep must still stop right after that point, not run on."""
    proc = subprocess.Popen([REGFW, "sweep", "linear", "--epochs", "3", "--seeds", "0-299", "--tracking-uri", store],
                            cwd=tmp_path, env=clean_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    printed = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"the sweep ended early: {proc.stderr.read()}"
        printed.append(line)
        if line.startswith("[  3/300]"):
            break
    time.sleep(0.2)  # into the next point
    proc.send_signal(signum)
    sent, sent_at = time.monotonic(), time.time()
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the sweep still ran 30 s after the signal")
    took = time.monotonic() - sent
    assert proc.returncode == code, err
    assert took < STOP_WITHIN, f"stopped {took:.1f} s after the signal"
    assert "regfw: error: sweep interrupted" in err and "Traceback" not in err
    runs = dict(runs_in(store))
    assert "RUNNING" not in runs.values()
    parents = [r for r in runs if tags_of(store, r).get("regfw.role") == "sweep"]
    assert len(parents) == 1 and runs[parents[0]] == "KILLED"
    assert tags_of(store, parents[0])["regfw.sweep_not_run"] != "0"
    children = [r for r in runs if r not in parents]
    assert len(children) >= 3, f"{len(children)} points started; the signal came after the third"
    # Points take tens of ms now: how many ran before the signal varies; none may start after it,
    # save the one being set up when it came.
    with sqlite3.connect(store[len("sqlite:///"):]) as db:
        starts = [t / 1000 for (t,) in db.execute("SELECT start_time FROM runs WHERE run_uuid IN (%s)"
                                                    % ",".join("?" * len(children)), children)]
    late = [t - sent_at for t in starts if t > sent_at + 0.05]
    assert len(late) <= 1, f"{len(late)} points started after the signal ({late})"


# -- 4. --config files that are no configuration ---------------------------------------------------
def alias_bomb(path: Path, levels: int = 9, width: int = 9) -> Path:
    """A few hundred bytes that expand to width**levels values (the 'billion laughs')."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_config_alias_bomb_is_refused_fast(invoke, tmp_path):
    path = alias_bomb(tmp_path / "bomb.yaml")
    assert path.stat().st_size < 500
    started = time.monotonic()
    line = one_line_error(invoke("show", "linear", "--config", path))
    assert time.monotonic() - started < 5
    assert "expands to over" in line


def test_config_aliases_within_bounds_still_work(invoke, tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("train: &t {epochs: 7}\noptimizer: {params: {lr: 0.25}}\n")
    shown = invoke("show", "linear", "--config", path)
    assert shown.exit_code == 0 and "epochs: 7" in shown.stdout and "lr: 0.25" in shown.stdout


def test_config_alias_into_itself_is_refused(invoke, tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("train: &t {epochs: 3, again: *t}\n")
    assert "contains itself" in one_line_error(invoke("show", "linear", "--config", path))


def test_config_too_big_is_refused_before_reading(invoke, tmp_path):
    from regfw.configfile import MAX_CONFIG_BYTES

    path = tmp_path / "big.yaml"
    with path.open("w") as handle:  # a sparse file: the size is what counts, not the content
        handle.write("train: {epochs: 3}\n")
        handle.truncate(50 * MAX_CONFIG_BYTES)
    started = time.monotonic()
    line = one_line_error(invoke("show", "linear", "--config", path))
    assert time.monotonic() - started < 5 and f"at most {MAX_CONFIG_BYTES} bytes" in line


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_config_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path, kind):
    if kind == "fifo":
        target = tmp_path / "pipe.yaml"
        os.mkfifo(target)  # nobody writes to it: opening it would block forever
    elif kind == "device":
        target = Path("/dev/zero")  # never ends
    else:
        target = tmp_path
    result = subprocess.run([REGFW, "show", "linear", "--config", str(target)], capture_output=True, text=True,
                            env=clean_env(), timeout=60)
    assert result.returncode == 1
    line = one_line_error(result)
    assert ("is a folder" if kind == "folder" else "not a regular file") in line


# -- 9. stores no run can be kept in ---------------------------------------------------------------
def other_database(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    return path


@pytest.mark.parametrize("uri, expected", [
    ("http://127.0.0.1:99999", "invalid port"),
    ("{tmp}/plain-folder", "MLflow 3 no longer writes"),
    ("file://{tmp}/plain-folder", "sqlite:///PATH/mlflow.db"),
    ("bogus://x", "unknown scheme 'bogus'"),
    ("sqlite://", "every run would vanish"),
    ("sqlite:///:memory:", "in-memory"),
    ("sqlite:///{tmp}", "is a folder; give the database file inside it"),
    ("sqlite:///{tmp}/other.db", "another application's database (tables customers)"),
    ("sqlite:///{tmp}/garbage.db", "is not a SQLite database"),
])
def test_unusable_stores_are_one_line_before_any_run(invoke, tmp_path, uri, expected):
    other_database(tmp_path / "other.db")
    (tmp_path / "garbage.db").write_text("not a database at all\n" * 20)
    uri = uri.format(tmp=tmp_path)
    started = time.monotonic()
    line = one_line_error(invoke("run", "linear", "--epochs", 1, "--tracking-uri", uri, "-q"))
    assert expected in line
    assert time.monotonic() - started < 30  # a folder as the SQLite file used to retry for ~110 s
    with sqlite3.connect(tmp_path / "other.db") as db:  # untouched: no MLflow table added
        assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")} == {"customers"}


# -- 10. smaller messages ---------------------------------------------------------------------------
def test_set_experiment_says_where_the_experiment_goes(invoke):
    line = one_line_error(invoke("show", "linear", "--set", "experiment=quadratic"))
    assert "did you mean 'experiment'" not in line and "first argument" in line


def test_repeated_set_key_is_refused_in_run_as_in_sweep(invoke, store):
    line = one_line_error(invoke("run", "linear", "--set", "optimizer.lr=0.1", "--set", "optimizer.lr=0.2",
                                 "--tracking-uri", store))
    assert "given twice" in line
    assert runs_in(store) == []


# -- 8. meaningless combinations --------------------------------------------------------------------
@pytest.mark.parametrize("loss, declared", [("cross-entropy", "multiclass"), ("bce-with-logits", "binary")])
def test_classification_loss_on_regression_is_refused_before_any_run(invoke, store, loss, declared):
    line = one_line_error(invoke("run", "linear", "--loss", loss, "--epochs", 1, "--tracking-uri", store))
    assert f"loss '{loss}' is for {declared} targets" in line and "regression task" in line and "mse" in line
    assert runs_in(store) == []


def test_losses_that_fit_the_task_still_resolve(invoke):
    assert invoke("show", "binary", "--loss", "mse").exit_code == 0  # a Brier-style loss on 0/1 targets
    assert invoke("show", "mnist", "--loss", "bce-with-logits").exit_code == 1  # 10 classes: refused


# -- 7. missing MNIST files: one complete line saying where they go and come from -------------------
@pytest.mark.parametrize("dataset, source", [("mnist", "MNIST mirrors"), ("fashion-mnist", "dataset-fashion-mnist")])
def test_missing_mnist_files_line_is_complete(invoke, monkeypatch, tmp_path, store, dataset, source):
    import torchvision.datasets

    for cls in (torchvision.datasets.MNIST, torchvision.datasets.FashionMNIST):
        monkeypatch.setattr(cls, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens: fails at once, offline too
    monkeypatch.setenv("REGFW_DATA", str(tmp_path / "data"))
    line = one_line_error(invoke("run", "mnist", "--dataset", dataset, "--tracking-uri", store,
                                 "--set", f"dataset.root={tmp_path / 'nowhere'}"))
    assert len(line) < 1000 and "..." not in line.split("failed (", 1)[1]  # nothing cut by the CLI's limit
    assert "Connection refused" in line and "dataset.root=FOLDER" in line and source in line
    assert "t10k-labels-idx1-ubyte.gz" in line and "http" not in line
    assert runs_in(store) == []


# -- 10. NaN from the model itself is not a learning-rate problem ----------------------------------
NAN_MODEL = """
import torch
from regfw import Param, hookimpl


class NanOut(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.layer = torch.nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.layer(x) * float("nan")


@hookimpl
def register_models(register):
    register("nan-out", NanOut, description="a linear layer whose output is NaN",
             params={"in_features": Param(None, type=int, min=1), "out_features": Param(None, type=int, min=1)})
"""


@pytest.mark.slow
def test_nan_from_the_model_is_not_blamed_on_the_learning_rate(fake_dist, invoke, store):
    fake_dist("nanout", {"nanout_plugin": NAN_MODEL}, {"nanout": "nanout_plugin"})
    result = invoke("run", "linear", "--model", "nan-out", "--epochs", 5, "--tracking-uri", store, "-q")
    assert result.exit_code == 3
    line = one_line_error(result)
    assert "learning rate" not in line and "no finite value before it" in line and "at epoch 1" in line
    (run_id, status), = runs_in(store)
    assert status == "FAILED" and "no finite value" in tags_of(store, run_id)["regfw.failure"]


def test_a_real_divergence_still_suggests_a_smaller_learning_rate(invoke, store):
    result = invoke("run", "quadratic-param", "--lr", "1e-3", "--epochs", 2000, "--tracking-uri", store, "-q")
    assert result.exit_code == 3 and "try a smaller learning rate" in one_line_error(result)


@pytest.mark.slow
# -- 12. params read as `regfw show` prints them ----------------------------------------------------
def test_none_and_empty_list_params_are_stored_readably(invoke, store):
    from mlflow import MlflowClient

    from regfw.store import same_param

    result = invoke("run", "linear", "--epochs", 2, "--set", "train.metrics=[]", "--tracking-uri", store, "-q")
    assert result.exit_code == 0, result.stderr
    (run_id, _), = runs_in(store)
    params = MlflowClient(tracking_uri=store).get_run(run_id).data.params
    assert params["train.log_every"] == "null" and params["train.metrics"] == "[]"
    assert "None" not in params.values() and "" not in params.values()
    # a run logged by an earlier regfw ("None", "") still resumes: its params still match
    assert same_param("None", None) and same_param("", []) and same_param("null", None)
    assert not same_param("None", 5) and not same_param("", ["accuracy"])


# -- 11. new-plugin ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("regression", "experiment 'regression' is already registered by plugin 'table'"),
    ("regfw-manual-sgd", "experiment 'manual-sgd' is already registered by plugin 'manual-gd'"),
    ("p" * 10_000, "plugin name is 10000 characters"),
])
def test_new_plugin_refuses_names_that_would_clash_or_cannot_be_a_folder(invoke, tmp_path, name, expected):
    line = one_line_error(invoke("new-plugin", name, "--dir", tmp_path))
    assert expected in line
    assert list(tmp_path.iterdir()) == []


def test_new_plugin_help_readme_and_optimizer(invoke, tmp_path, monkeypatch):
    import importlib

    import torch

    assert "regfw-foo` writes foo/" in " ".join(invoke("new-plugin", "--help").stdout.split())
    assert invoke("new-plugin", "regfw-hb", "--dir", tmp_path).exit_code == 0
    folder = tmp_path / "hb"
    assert "environment regfw is installed in active" in (folder / "README.md").read_text()
    monkeypatch.syspath_prepend(str(folder))
    components = importlib.import_module("regfw_hb.components")
    weight = torch.nn.Parameter(torch.tensor([3.0]))
    optimizer = components.HeavyBall([weight], lr=0.1)

    def closure():  # the torch.optim contract: step(closure) re-evaluates the loss with gradients
        optimizer.zero_grad()
        loss = (weight ** 2).sum()
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == pytest.approx(9.0)
    assert weight.item() < 3.0



# -- 9/10. names, run ids, tables ---------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [("x" * 10_000, "experiment name is 10000 characters"),
                                            ("two\nlines", "control character")])
def test_experiment_names_mlflow_cannot_keep_are_one_line(invoke, store, name, expected):
    assert expected in one_line_error(invoke("run", "linear", "--epochs", 1, "--experiment-name", name,
                                             "--tracking-uri", store, "-q"))
    assert runs_in(store) == []


@pytest.fixture
def one_run(invoke, store):
    """A store with one checkpointed, FINISHED linear run named 10,000 characters long."""
    result = invoke("run", "linear", "--epochs", 2, "--checkpoint-every", 1, "--run-name", "r" * 10_000,
                    "--tracking-uri", store, "-q")
    assert result.exit_code == 0, result.stderr
    (run_id, _), = runs_in(store)
    return run_id


def test_resume_takes_a_prefix_and_refuses_what_is_no_run_id(invoke, store, one_run):
    assert "is not a run id" in one_line_error(invoke("resume", "../etc/passwd", "--tracking-uri", store))
    # a unique prefix, as `compare` takes it, reaches the run (already FINISHED: nothing to resume)
    line = one_line_error(invoke("resume", one_run[:8], "--tracking-uri", store))
    assert f"run {one_run} already FINISHED" in line


def test_resume_on_a_missing_store_creates_nothing(invoke, tmp_path):
    line = one_line_error(invoke("resume", "abcdef12", "--tracking-uri", f"sqlite:///{tmp_path / 'no' / 'm.db'}"))
    assert "no run store" in line and not (tmp_path / "no").exists()


@pytest.mark.slow
def test_runs_table_cuts_a_huge_run_name(invoke, store, one_run):
    from regfw.cli.format import MAX_CELL

    table = invoke("runs", "--tracking-uri", store).stdout.splitlines()
    assert len(table) == 3 and max(map(len, table)) < 3 * MAX_CELL
    assert "r" * (MAX_CELL - 3) + "..." in table[2]


def test_compare_plot_into_a_folder_names_the_file_it_wrote(invoke, store, one_run, tmp_path):
    assert invoke("run", "linear", "--epochs", 1, "--tracking-uri", store, "-q").exit_code == 0
    other = next(run_id for run_id, _ in runs_in(store) if run_id != one_run)
    result = invoke("compare", one_run[:8], other[:8], "--plot", tmp_path, "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    written = tmp_path / "compare.png"
    assert written.is_file() and f"written to {written}" in result.stdout


def test_output_to_a_full_disk_is_one_line(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        result = subprocess.run([REGFW, "list"], stdout=full, stderr=subprocess.PIPE, text=True, env=clean_env(),
                                timeout=60)
    assert result.returncode == 1
    assert one_line_error(result) == "regfw: error: cannot write the output: No space left on device"


# -- 2/6. verified: grids counted first, 64-bit seeds, factories of the wrong type ----------------------
def test_a_huge_grid_is_refused_with_its_size_before_it_is_built(invoke):
    started = time.monotonic()
    line = one_line_error(invoke("sweep", "linear", "--seeds", "0-100000000", "--dry-run"))
    assert "100,000,001 seeds" in line and time.monotonic() - started < 5
    lrs = ",".join(str(0.001 * (i + 1)) for i in range(100))
    line = one_line_error(invoke("sweep", "linear", "--set", f"optimizer.lr={lrs}", "--seeds", "0-99", "--dry-run"))
    assert "10,000 points" in line and "--max-points 10000" in line


def test_a_seed_numpy_cannot_take_is_one_line_and_no_run(invoke, store):
    assert "seed must be at most" in one_line_error(invoke("run", "linear", "--seed", 2**32, "--tracking-uri", store))
    assert runs_in(store) == []


DICT_MODEL = """
from regfw import Param, hookimpl


@hookimpl
def register_models(register):
    register("dict-model", lambda in_features, out_features: {"weight": 1.0}, description="returns a dict",
             params={"in_features": Param(None, type=int, min=1), "out_features": Param(None, type=int, min=1)})
"""


def test_a_factory_returning_the_wrong_type_names_its_plugin_and_leaves_no_run(fake_dist, invoke, store):
    fake_dist("dictmodel", {"dictmodel_plugin": DICT_MODEL}, {"dictmodel": "dictmodel_plugin"})
    line = one_line_error(invoke("run", "linear", "--model", "dict-model", "--tracking-uri", store))
    assert "model 'dict-model' from plugin 'dictmodel' returned dict" in line
    assert runs_in(store) == []
