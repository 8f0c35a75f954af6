"""Issue 29's hostile command lines, through the CLI against a real SQLite store: a value that does
not fit what it feeds, a size that contradicts the data, a file that is not a file, a bad
`landscape` target, torchrun. Each is one `regfw: error:` line, a non-zero exit and no run in the
store, decided before anything trains (docs/reliability.md lists the checks)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from conftest import read_only


def refused(result) -> str:
    """The one stderr line of a refused command: no traceback, no last-resort "unexpected"."""
    lines = result.stderr.strip().splitlines()
    code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    assert code == 1, (code, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("regfw: error: "), result.stderr
    assert "unexpected" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


def runs_in(uri: str) -> list:
    """Every run in a SQLite store, read from the file itself."""
    path = Path(uri[len("sqlite:///"):])
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT run_uuid, status FROM runs").fetchall()
        except sqlite3.OperationalError:  # no tables: nothing was ever written
            return []


# -- values that do not fit what they feed -------------------------------------------------------
BIG = str(10**400)


@pytest.mark.parametrize("args, expected", [
    (["--lr", "1e308"], "optimizer.lr=1e+308 does not fit float32"),
    (["--set", "optimizer.lr=1e308"], "optimizer.lr=1e308 does not fit float32"),
    (["--set", "optimizer.weight_decay=1e308"], "optimizer.weight_decay=1e308 does not fit float32"),
    (["--set", "dataset.noise=1e308"], "dataset.noise=1e308 does not fit float32"),
    (["--set", f"dataset.x_min={2**64}"], f"dataset.x_min={2**64} does not fit float32 data"),
    (["--set", f"optimizer.lr={BIG}"], "optimizer.lr=100000000000000000...00000000 (401 characters) does not fit"),
    (["--set", f"train.epochs={2**64}"], f"train.epochs={2**64} does not fit int64"),
    (["--epochs", str(2**63)], f"train.epochs={2**63} does not fit int64"),
    (["--epochs", BIG], "train.epochs=100000000000000000...00000000 (401 characters) does not fit int64"),
    (["--threads", str(2**31)], f"train.threads={2**31} does not fit int32"),
    (["--set", f"train.threads={2**64}"], f"train.threads={2**64} does not fit int32"),
])
def test_a_number_that_does_not_fit_is_refused_before_any_run(invoke, store, args, expected):
    line = refused(invoke("run", "linear", "-q", "--tracking-uri", store, *args))
    assert expected in line, line
    assert runs_in(store) == []


def test_a_config_file_number_that_does_not_fit_is_refused(invoke, store, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"optimizer: {{params: {{lr: {BIG}}}}}\ntrain: {{epochs: 2}}\n")
    assert "optimizer.lr=" in refused(invoke("run", "linear", "--config", path, "--tracking-uri", store))
    path.write_text("dataset: {params: {noise: 1.0e+300}}\n")
    assert "dataset.noise=1e+300 does not fit float32" in refused(
        invoke("run", "linear", "--config", path, "--tracking-uri", store))
    assert runs_in(store) == []


def test_numbers_within_their_dtype_still_resolve(invoke):
    shown = invoke("show", "linear", "--set", "optimizer.lr=3e38", "--set", f"train.epochs={2**63 - 1}",
                   "--set", "train.threads=1_000", "--set", "dataset.x_min=-1e19")
    assert shown.exit_code == 0, shown.stderr
    assert "lr: 3.0e+38" in shown.stdout and f"epochs: {2**63 - 1}" in shown.stdout and "threads: 1000" in shown.stdout


def test_more_snapshots_than_epochs_is_refused_before_any_run(invoke, store):
    line = refused(invoke("run", "linear", "--epochs", 2, "--snapshots", 10**9, "-q", "--tracking-uri", store))
    assert "--snapshots 1000000000 is more than the 3 parameter states a 2-epoch run has" in line
    assert runs_in(store) == []


# -- sizes that contradict the data --------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["linear", "--set", "model.in_features=1_0"], "model.in_features=1_0: an underscore only groups digits in "
                                                   "threes (1_000); Python would read this as 10"),
    (["linear", "--set", "model.in_features=10"], "model.in_features=10 contradicts dataset 'linear-1d', whose "
                                                  "in_features is 1"),
    (["linear", "--set", "model.out_features=3"], "model.out_features=3 contradicts dataset 'linear-1d'"),
    (["sequence", "--set", "model.in_channels=3"], "model.in_channels=3 contradicts dataset 'sine-bursts'"),
    (["sequence", "--model", "mlp", "--set", "model.out_features=2"], "whose out_features is 4"),
])
def test_a_size_that_contradicts_the_data_is_refused_before_any_run(invoke, store, args, expected):
    line = refused(invoke("run", *args, "-q", "--tracking-uri", store))
    assert expected in line, line
    assert runs_in(store) == []


def test_sizes_that_agree_with_the_data_still_resolve(invoke):
    for args in (["linear", "--set", "model.in_features=1"], ["sequence", "--model", "mlp", "--set", "model.out_features=6"],
                 ["linear", "--set", "train.epochs=1_000"]):
        assert invoke("show", *args).exit_code == 0, args


# -- files that are not files --------------------------------------------------------------------
def alias_bomb(path: Path, levels: int = 9, width: int = 9) -> Path:
    """A few hundred bytes that expand to width**levels values (the 'billion laughs')."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    path.write_text("\n".join(lines) + "\n")
    return path


def not_a_file(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A path that is no regular file, and what the refusal says about it."""
    if kind == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)  # nobody writes to it: a plain open() would block forever
        return target, "is a FIFO, not a regular file"
    if kind == "device":
        return Path("/dev/zero"), "is a device, not a regular file"  # read() never ends
    target = tmp_path / "folder.csv"
    target.mkdir()
    return target, "is a folder"


def timed_script(regfw_script, *args):
    started = time.monotonic()
    result = regfw_script(*args, env={"OMP_NUM_THREADS": "1"}, timeout=60)  # a hang fails here
    return result, time.monotonic() - started


@pytest.mark.parametrize("key", ["dataset.path", "dataset.test_path"])
@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_table_that_is_not_a_file_is_refused_without_reading(regfw_script, tmp_path, key, kind):
    target, expected = not_a_file(kind, tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    table = tmp_path / "ok.csv"
    table.write_text("size,price\n1,2\n2,4\n3,6\n4,8\n")
    path = target if key == "dataset.path" else table
    extra = ["--set", f"dataset.test_path={target}"] if key == "dataset.test_path" else []
    result, seconds = timed_script(regfw_script, "run", "regression", "--set", f"dataset.path={path}", *extra,
                                   "--set", "dataset.target=price", "-q", "--tracking-uri", store)
    line = refused(result)
    assert f"{key} {target} {expected}" in line, line
    assert runs_in(store) == []
    print(f"{kind} as {key}: refused in {seconds:.2f} s (with interpreter start-up)")


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "bomb"])
def test_a_ray_runtime_env_that_is_not_a_file_is_refused_before_any_run(regfw_script, tmp_path, kind):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'regfw[ray]')")
    if kind == "bomb":
        target, expected = alias_bomb(tmp_path / "env.yaml"), "expands to over 100000 values"
    else:
        target, expected = not_a_file(kind, tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result, seconds = timed_script(regfw_script, "sweep", "linear", "--epochs", 2, "--backend", "ray",
                                   "--ray-runtime-env", target, "-q", "--tracking-uri", store)
    line = refused(result)
    assert f"--ray-runtime-env {target}" in line and expected in line, line
    assert runs_in(store) == []
    print(f"{kind} as --ray-runtime-env: refused in {seconds:.2f} s (with interpreter start-up)")


# -- a table's cells -----------------------------------------------------------------------------
@pytest.mark.parametrize("cell, shown", [("1e308", "1e+308"), ("-3.5e39", "-3.5e+39")])
def test_a_table_cell_that_does_not_fit_float32_is_refused_naming_row_and_column(invoke, store, tmp_path, cell, shown):
    table = tmp_path / "houses.csv"
    table.write_text(f"size,price\n1,2\n2,4\n{cell},6\n4,8\n")
    line = refused(invoke("run", "regression", "--set", f"dataset.path={table}", "--set", "dataset.target=price",
                          "-q", "--tracking-uri", store))
    assert f"houses.csv: column 'size' row 3 holds {shown}, which does not fit float32" in line, line
    assert runs_in(store) == []
    table.write_text("size,price\n1,2\n2,4\n3e38,6\n4,8\n")  # within float32: still a table
    assert invoke("show", "regression", "--set", f"dataset.path={table}", "--set", "dataset.target=price").exit_code == 0


# -- regfw landscape ------------------------------------------------------------------------------
def test_landscape_refuses_a_bad_span_or_out_before_drawing(invoke, store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the store's artifacts land beside it, not in the checkout
    assert invoke("run", "manual-gd", "-q", "--tracking-uri", store).exit_code == 0
    (run_id, status), = runs_in(store)
    a_file = tmp_path / "a-file.png"
    a_file.write_text("not a folder")
    cases = [(["--span", "nan"], "--span must be a finite number above 0 that fits float32"),
             (["--span", "inf"], "got inf"), (["--span", "1e308"], "got 1e+308"), (["--span", "0"], "got 0.0"),
             (["--span", "-1"], "got -1.0"),
             (["--out", a_file], f"--out {a_file} is a file; give a folder"),
             (["--out", a_file / "pictures"], f"--out {a_file / 'pictures'}: cannot create the folder: Not a directory")]
    for args, expected in cases:
        line = refused(invoke("landscape", run_id, "--grid", 3, "--tracking-uri", store, *args))
        assert expected in line, (args, line)
    from mlflow import MlflowClient

    assert [a.path for a in MlflowClient(store).list_artifacts(run_id) if a.path == "landscape"] == []  # nothing drawn
    assert runs_in(store) == [(run_id, status)] and a_file.read_text() == "not a folder"


def test_a_ui_host_that_does_not_resolve_is_one_line(invoke, store):
    line = refused(invoke("ui", "--host", "no-such-host.invalid", "--tracking-uri", store))
    assert "--host 'no-such-host.invalid' does not resolve" in line


@pytest.mark.parametrize("where, expected", [
    ("sqlite:////proc/regfw-store.db", "/proc is the kernel's"),
    ("sqlite:///{folder}/a\nb.db", "holds a control character"),
    ("sqlite:///{folder}/" + "x" * 300 + "/mlflow.db", "the path is too long for the OS"),
], ids=["proc", "newline", "long-name"])
def test_a_store_path_no_database_can_be_at_is_one_line_and_makes_nothing(invoke, tmp_path, where, expected):
    uri = where.format(folder=tmp_path)
    line = refused(invoke("run", "linear", "--epochs", "2", "--tracking-uri", uri))
    assert expected in line
    assert list(tmp_path.iterdir()) == []  # no database, no lock file, no artifacts folder


# -- an experiment name is text, never a path -----------------------------------------------------
NAMES_THAT_LOOK_LIKE_PATHS = ["../../escape", "../etc", "/abs", "..\\..\\up", "..", ".", "é" * 150, "x/" * 128,
                              "a/b", "a\\b", "a_b"]  # 150 é are 300 bytes; 128 "x/" are MLflow's 256 characters


def test_an_experiment_name_never_puts_artifacts_outside_the_store(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative location would resolve here
    folder = tmp_path / "deep" / "store"
    uri = f"sqlite:///{folder / 'mlflow.db'}"  # one store for every name: a new store costs seconds
    for name in NAMES_THAT_LOOK_LIKE_PATHS:
        result = invoke("run", "linear", "--epochs", 2, "-q", "--tracking-uri", uri, "--experiment-name", name)
        assert result.exit_code == 0, (name, result.stderr)
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    homes = set()
    for name in NAMES_THAT_LOOK_LIKE_PATHS:
        experiment = client.get_experiment_by_name(name)  # the name itself is kept as given
        run, = client.search_runs([experiment.experiment_id])
        artifacts = Path(url2pathname(urlparse(run.info.artifact_uri).path))
        home = artifacts.parent.parent
        assert home.parent == folder / "artifacts" and artifacts.parent.name == run.info.run_id, (name, artifacts)
        assert len(home.name.encode()) <= 255 and not home.name.startswith("."), (name, home)
        assert {"loss_curve.svg", "fit.svg"} <= {p.name for p in artifacts.iterdir()}, name
        homes.add(home)
    assert len(homes) == len(NAMES_THAT_LOOK_LIKE_PATHS)  # no two names share a folder ("a/b", "a\\b", "a_b")
    assert (folder / "artifacts" / "a_b").is_dir()  # a plain name keeps its readable folder
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(folder in p.parents for p in written), written  # nothing outside the store's folder


@pytest.mark.parametrize("name, expected", [("a\0b", "holds a control character"), ("x" * 257, "257 characters"),
                                            ("  ", "the experiment name is empty")], ids=["nul", "too-long", "blank"])
def test_an_experiment_name_mlflow_cannot_keep_is_refused_before_any_run(invoke, store, name, expected):
    line = refused(invoke("run", "linear", "--epochs", "2", "--tracking-uri", store, "--experiment-name", name))
    assert expected in line and runs_in(store) == []


# -- torchrun: what no rank can train is refused before any process starts --------------------------
@pytest.mark.parametrize("args, expected", [
    (["manual-gd"], "train.grad=formula computes gradients outside autograd"),
    (["linear", "--device", "mps"], "data-parallel runs need --device cuda or cpu"),
    (["linear", "--device", "cuda:1"], "give --device cuda, not cuda:1"),
], ids=["formula-grad", "mps", "cuda-index"])
def test_a_config_no_rank_can_train_is_one_line_before_torchrun_starts(regfw_script, tmp_path, args, expected):
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    result, seconds = timed_script(regfw_script, "run", *args, "--nproc", 2, "--epochs", 2, "-q", "--tracking-uri", store)
    line = refused(result)  # once, not once per rank; exit 1, not torchrun's 143 for the rank it stopped
    assert expected in line, line
    assert "elastic" not in result.stderr and runs_in(store) == []
    print(f"{args[0]} --nproc 2: refused in {seconds:.2f} s (with interpreter start-up)")


# -- a model that cannot be built for the data, or cannot fit any memory ------------------------------
@pytest.mark.parametrize("vectorize", [True, False], ids=["vectorized", "one-by-one"])
def test_a_sweep_whose_model_cannot_be_built_for_the_dataset_is_refused_before_any_run(invoke, store, vectorize):
    result = invoke("sweep", "linear", "--model", "cnn-lstm-attention", "--set", "optimizer.lr=0.1,0.2", "--epochs", 2,
                    "-q", "--tracking-uri", store, *(["--vectorize"] if vectorize else []))
    line = refused(result)  # was "2 of 2 sweep points failed" and a FAILED parent
    assert "model 'cnn-lstm-attention' needs in_channels and out_features" in line, line
    assert runs_in(store) == []


HUGE = 10**11  # hidden units: terabytes of parameters, past any machine's memory
MEMORY = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
# linear's MLP 1 -> H -> 1 has 3H + 1 parameters: with H = MEMORY / 240 they and their gradients take a
# tenth of the memory, and the layer outputs of one 100-row batch (100 x H floats, twice) over three times it.
WIDE = MEMORY // 240


@pytest.mark.parametrize("args, expected", [
    (["linear", "--model", "mlp", "--set", f"model.hidden={WIDE}"],
     [f"model 'mlp' with {3 * WIDE + 1:,} parameters needs at least", "of layer outputs for a batch of 100 rows"]),
    (["mlp-regression", "--set", f"model.hidden={HUGE}"],
     [f"model 'mlp' with {502 * HUGE + 1:,} parameters needs at least", "of parameters as float32"]),
], ids=["layer-outputs", "parameters"])
def test_a_model_no_memory_can_hold_is_refused_with_its_size_before_any_run(regfw_script, tmp_path, args, expected):
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    result, seconds = timed_script(regfw_script, "run", *args, "--epochs", 2, "-q", "--tracking-uri", store)
    line = refused(result)  # was 68 s growing to 12 GB, then "can't allocate" and a FAILED run
    assert all(e in line for e in expected) and "of memory the machine has" in line, line
    assert runs_in(store) == []
    print(f"{args[0]} {args[-1]}: refused in {seconds:.2f} s (with interpreter start-up)")


def test_a_sweep_point_no_memory_can_hold_is_refused_naming_the_point(invoke, store):
    line = refused(invoke("sweep", "linear", "--model", "mlp", "--set", f"model.hidden=8;{HUGE}", "--epochs", 2,
                          "-q", "--tracking-uri", store))
    assert line.startswith(f"regfw: error: sweep point 2: model 'mlp' with {3 * HUGE + 1:,} parameters"), line
    assert runs_in(store) == []


# -- a sweep whose points all fail says why, under -q too ---------------------------------------------
def test_a_quiet_sweep_whose_every_point_fails_says_why_on_its_error_line(invoke):
    result = invoke("sweep", "linear", "--set", "optimizer.lr=1e15,1e16", "--epochs", 30, "--log-every", 1, "-q",
                    "--no-track")  # was only "2 of 2 sweep points failed"
    assert result.exit_code == 2 and result.stdout == "", result.stdout
    line = one_stderr_line(result)
    assert line.startswith("regfw: error: 2 of 2 sweep points failed") and "diverged at epoch " in line, line
    assert "try a smaller learning rate" in line


def one_stderr_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# -- --threads beyond the machine: a warning with the core count ---------------------------------------
def test_more_threads_than_cores_is_a_warning_with_the_core_count(invoke):
    have = len(os.sched_getaffinity(0))
    warned = f"regfw: warning: --threads {have + 1} is more than the {have} CPU core(s) this process can use"
    for command in (["run", "linear"], ["sweep", "linear", "--set", "optimizer.lr=0.1,0.2"]):
        result = invoke(*command, "--threads", have + 1, "--epochs", 2, "-q", "--no-track")
        assert result.exit_code == 0 and result.stderr.splitlines() == [warned + "; torch's threads will wait for "
                                                                         f"each other (give --threads {have} at most)"]
        fits = invoke(*command, "--threads", have, "--epochs", 2, "-q", "--no-track")
        assert fits.exit_code == 0 and fits.stderr == "", fits.stderr


# -- a store folder nobody can write in: refused at once, not after MLflow's minutes of retries ------
def test_a_store_folder_that_cannot_be_written_is_one_line_at_once(regfw_script, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    with read_only(folder, 0o555):
        result, seconds = timed_script(regfw_script, "run", "linear", "--epochs", 2, "-q", "--tracking-uri",
                                       f"sqlite:///{folder / 'mlflow.db'}")  # was 2 min 20 s of MLflow's retries
    line = refused(result)
    assert f"cannot write in the store folder {folder}" in line, line
    assert list(folder.iterdir()) == []
    print(f"unwritable store folder: refused in {seconds:.2f} s (with interpreter start-up)")


# -- every path regfw writes: one line before any work -----------------------------------------------
def test_a_plot_path_that_cannot_be_written_is_one_line_before_the_store_is_asked(invoke, store, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("kept")
    long_name = tmp_path / ("x" * 300 + ".png")
    cases = [(a_file / "x.png", f"{a_file} is a file, not a folder"),
             (tmp_path / "no-folder" / "x.png", "does not exist"),
             ("/proc/x.png", "/proc is the kernel's"), ("/dev/null", "/dev is the kernel's"),
             (long_name, "the path is too long for the OS"), (long_name / "x.png", "the path is too long for the OS")]
    for path, expected in cases:  # was "unexpected OSError: File name too long" for the long name
        line = refused(invoke("compare", "aaaaaaaa", "bbbbbbbb", "--plot", path, "--tracking-uri", store))
        assert line.startswith("regfw: error: --plot ") and expected in line, (path, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "store"] and a_file.read_text() == "kept"
    assert list((tmp_path / "store").iterdir()) == []  # the store was never opened


def test_a_folder_name_the_os_cannot_hold_is_one_line_for_new_plugin_and_landscape_out(invoke, tmp_path):
    too_long = tmp_path / ("x" * 300)
    line = refused(invoke("new-plugin", "regfw-zzz", "--dir", too_long))
    assert "--dir " in line and "the path is too long for the OS" in line, line
    line = refused(invoke("landscape", "aaaaaaaa", "--out", too_long / "pictures"))
    assert "--out " in line and "the path is too long for the OS" in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_interval_past_the_last_epoch_is_refused_before_any_run(invoke, store):
    line = refused(invoke("run", "linear", "--epochs", 5, "--checkpoint-every", 6, "--tracking-uri", store))
    assert "--checkpoint-every 6 is more than the 5 epochs of this run: it would save no checkpoint" in line
    line = refused(invoke("run", "linear", "--epochs", 5, "--checkpoint-every", 10**30, "--tracking-uri", store))
    assert f"--checkpoint-every {10**30} is more than the 5 epochs" in line
    assert runs_in(store) == []


@pytest.mark.parametrize("option", ["--cpus-per-point", "--gpus-per-point"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e400"])
def test_a_ray_resource_that_is_no_finite_number_is_refused_before_ray_starts(invoke, store, option, value):
    line = refused(invoke("sweep", "linear", "--epochs", 2, "--backend", "ray", option, value, "-q",
                          "--tracking-uri", store))
    assert f"{option} must be a finite number of CPUs or GPUs" in line, line
    assert runs_in(store) == []


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_rerun_tolerance_that_is_not_finite_is_a_usage_line(invoke, store, value):
    result = invoke("rerun", "0" * 32, "--verify", "--tolerance", value, "--tracking-uri", store)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert f"--tolerance': {value} is not a finite number" in lines[0]
