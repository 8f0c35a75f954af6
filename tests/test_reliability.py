"""Faults provoked for real: divergence, signals to a real `regfw run`, checkpoint + resume after a
kill, parallel runs on a fresh store, store trouble, a real `mlflow server`, broken plugins and
missing data. Each test reads the MLflow store back to check that the run tells the truth.
See docs/reliability.md for the list."""

from __future__ import annotations

import math
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from regfw.store.keys import stored

from conftest import metrics_of, read_only

REGFW = str(Path(sys.executable).with_name("regfw"))
DIVERGED = "; try a smaller learning rate"


# -- helpers -------------------------------------------------------------------------------------
def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}
    return env | extra


def start(args, cwd, **popen) -> subprocess.Popen:
    """A real `regfw` process with SIGINT at its default (Python turns it into KeyboardInterrupt)."""
    return subprocess.Popen([REGFW, *map(str, args)], cwd=cwd, env=clean_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 180) -> list[str]:
    """Read stderr until a line holds ``needle``; return the lines read."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if needle in line:
                return lines
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no line with {needle!r} from regfw; got {lines!r}")


def db_path(uri: str) -> str:
    return uri[len("sqlite:///"):]


def tag_value(uri: str, key: str) -> str | None:
    """Read a tag straight from the SQLite file (cheap polling while a run writes)."""
    try:
        with sqlite3.connect(db_path(uri), timeout=1) as db:
            row = db.execute("select value from tags where key = ?", (key,)).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def runs_of(uri: str, experiment: str):
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in the store"
    return client, client.search_runs([found.experiment_id])


def only_run(uri: str, experiment: str):
    client, runs = runs_of(uri, experiment)
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def steps(client, run_id, key="train_loss") -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, stored(key))]


def assert_one_line_error(stderr: str, *needles: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("regfw: error: ")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """An empty MLflow database, migrated once per test session (creating one costs seconds)."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(tmp_path, template_db) -> str:
    """Overrides conftest's ``store`` here: the same real SQLite store, copied from the migrated
    template so that subprocess tests do not each pay for MLflow's schema migrations."""
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(template_db, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


# -- divergence ----------------------------------------------------------------------------------
def test_divergence_stops_at_the_epoch_with_everything_before_it_kept(invoke, store):
    """quadratic-param with lr 1e-3 blows up within a few epochs (x up to 12, x² up to 144)."""
    result = invoke("run", "quadratic-param", "--lr", "1e-3", "--log-every", 1, "--epochs", 100000,
                    "--tracking-uri", store)
    assert result.exit_code == 3
    line = assert_one_line_error(result.stderr, "diverged at epoch ", DIVERGED, "marked FAILED")
    client, run = only_run(store, "quadratic-param")
    assert run.info.status == "FAILED"
    reason = run.data.tags["regfw.failure"]
    assert reason in line and reason.startswith("diverged at epoch ") and reason.endswith(DIVERGED)
    match = re.fullmatch(r"diverged at epoch (\d+), train_loss (nan|inf|-inf); try a smaller learning rate", reason)
    assert match, reason
    epoch = int(match.group(1))
    assert 1 < epoch < 1000  # stopped there, not after 100000 epochs
    assert run.data.tags["regfw.epochs_done"] == str(epoch)
    history = client.get_metric_history(run.info.run_id, stored("train_loss"))
    # every epoch up to the divergence is kept (log every epoch), nothing after it
    assert [m.step for m in history] == list(range(1, epoch + 1))
    assert all(math.isfinite(m.value) for m in history[:-1])
    assert not math.isfinite(history[-1].value) or history[-1].value == sys.float_info.max  # MLflow stores inf so
    assert "final_train_loss" in metrics_of(run) and "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_divergence_with_the_recipe_epochs_and_default_log_interval(invoke, store):
    """The recipe's own 500000 epochs: the run stops within a drain of the first logged non-finite loss."""
    started = time.monotonic()
    result = invoke("run", "quadratic-param", "--lr", "1e-3", "--tracking-uri", store, "-q")
    assert result.exit_code == 3 and result.stdout == ""
    line = assert_one_line_error(result.stderr, "diverged at epoch ", DIVERGED)
    client, run = only_run(store, "quadratic-param")
    epoch = int(run.data.tags["regfw.epochs_done"])
    assert run.info.status == "FAILED" and f"diverged at epoch {epoch}," in line
    assert epoch < 500000 and time.monotonic() - started < 60
    assert max(steps(client, run.info.run_id)) == epoch


@pytest.mark.slow
# -- signals -------------------------------------------------------------------------------------
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_run_flushes_metrics_and_marks_killed(tmp_path, store, signum, code):
    proc = start(["run", "linear", "--epochs", 10_000_000, "--log-every", 1, "--tracking-uri", store], tmp_path)
    wait_for_line(proc, "epoch ")  # training, and a first batch of metrics drained
    time.sleep(1.0)  # more metrics buffered, not yet written
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    line = assert_one_line_error(err, "interrupted at epoch ", "marked KILLED")
    done = int(line.split("interrupted at epoch ")[1].split()[0])
    assert "was interrupted after" in out
    client, run = only_run(store, "linear")
    assert run.info.status == "KILLED" and run.data.tags["regfw.failure"] == f"interrupted at epoch {done}"
    assert run.data.tags["regfw.epochs_done"] == str(done) and done > 1
    # every completed epoch's metric is in the store: the buffer was flushed, nothing lost or extra
    assert steps(client, run.info.run_id) == list(range(1, done + 1))
    assert metrics_of(run)["final_train_loss"] == client.get_metric_history(run.info.run_id, stored("train_loss"))[-1].value
    assert {"config.yaml", "model_state_dict.pt"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_signals_are_held_while_a_write_is_in_flight():
    """What flush, checkpoint and finish rely on: a signal inside ``held()`` waits, then is re-sent once."""
    from regfw.interrupts import held

    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with held() as signals:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert seen == []  # nothing ran inside the block
        assert signals.signals == [signal.SIGTERM]
        signals.deliver()
        time.sleep(0.05)
        assert seen == [signal.SIGTERM]
        with held():  # nested in an outer hold (the final write): the inner re-send lands in the outer one
            with held() as inner:
                os.kill(os.getpid(), signal.SIGTERM)
            inner.deliver()
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- checkpoint and resume -----------------------------------------------------------------------
RESUMABLE = ["run", "linear", "--optimizer", "adam", "--set", "optimizer.lr=0.05", "--batch-size", 16,
             "--epochs", 400, "--log-every", 1, "--checkpoint-every", 40, "--seed", 3]


def final_record(client, run):
    """What must match between a resumed and an uninterrupted run (all but wall time)."""
    metrics = {k: v for k, v in metrics_of(run).items() if k != "train_seconds"}
    history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, stored("train_loss"))]
    return metrics, history, dict(run.data.params)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result_as_an_uninterrupted_one(tmp_path, store, invoke):
    proc = start([*RESUMABLE, "--experiment-name", "resumed", "--tracking-uri", store, "-q"], tmp_path)
    deadline = time.monotonic() + 180
    while int(tag_value(store, "regfw.checkpoint_epoch") or 0) < 80 and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.1)
    proc.kill()  # SIGKILL: no handler runs, the run is left RUNNING mid-way
    proc.communicate(timeout=60)
    client, killed = only_run(store, "resumed")
    assert killed.info.status == "RUNNING"
    assert int(killed.data.tags["regfw.checkpoint_epoch"]) < 400

    resumed = invoke("resume", killed.info.run_id, "--tracking-uri", store)
    assert resumed.exit_code == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr and "Downloading" not in resumed.stderr + resumed.stdout
    assert "resuming run" in resumed.stderr

    reference = invoke(*RESUMABLE, "--experiment-name", "straight", "--tracking-uri", store)
    assert reference.exit_code == 0, reference.stderr

    client, after = only_run(store, "resumed")  # the same run went on: no second run
    _, straight = only_run(store, "straight")
    assert after.info.run_id == killed.info.run_id and after.info.status == "FINISHED"
    assert "regfw.failure" not in after.data.tags
    assert int(after.data.tags["regfw.resumed_from_epoch"]) >= 80
    metrics, history, params = final_record(client, after)
    want_metrics, want_history, want_params = final_record(client, straight)
    assert params == want_params
    assert history == want_history  # every epoch once, equal to the uninterrupted run
    assert metrics == want_metrics  # final_*, best_*, optimum/excess loss, learned.* exactly
    for run, name in ((after, "a"), (straight, "b")):
        client.download_artifacts(run.info.run_id, "model_state_dict.pt", str(tmp_path / name))
    a = torch.load(tmp_path / "a" / "model_state_dict.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model_state_dict.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_torn_checkpoint_falls_back_to_the_other_slot(invoke, store, tmp_path):
    """The newest checkpoint file cut in half (a kill while writing it): the older slot is used."""
    args = ["run", "linear", "--batch-size", 10, "--epochs", 60, "--log-every", 1, "--checkpoint-every", 20,
            "--tracking-uri", store]
    assert invoke(*args).exit_code == 0
    client, run = only_run(store, "linear")
    run_id, want = run.info.run_id, final_record(client, run)
    folder = Path(client.download_artifacts(run_id, "checkpoint", str(tmp_path / "peek")))
    epochs = {p.name: torch.load(p, weights_only=True)["epoch"] for p in folder.glob("*.pt")}
    assert sorted(epochs.values()) == [40, 60]  # two slots, the last two checkpoints
    newest = max(epochs, key=epochs.get)
    artifact_dir = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoint"
    stored = artifact_dir / newest
    stored.write_bytes(stored.read_bytes()[: stored.stat().st_size // 2])
    client.set_terminated(run_id, "KILLED")

    result = invoke("resume", run_id, "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert "at epoch 41 of 60" in result.stderr
    client, after = only_run(store, "linear")
    assert after.info.status == "FINISHED" and final_record(client, after) == want


@pytest.mark.parametrize("case, message", [
    ("finished", "already FINISHED"),
    ("no-checkpoint", "has no checkpoint to resume from"),
    ("unknown", "no run 'feedface' in"),
])
def test_resume_refuses_in_one_line(invoke, store, case, message):
    args = ["run", "linear", "--epochs", 5, "--tracking-uri", store]
    if case != "unknown":
        assert invoke(*args).exit_code == 0
    client, runs = runs_of(store, "linear") if case != "unknown" else (None, [])
    run_id = runs[0].info.run_id if runs else "feedface"
    if case == "no-checkpoint":
        client.set_terminated(run_id, "KILLED")
    result = invoke("resume", run_id, "--tracking-uri", store)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, message)


def test_resume_refuses_a_run_whose_process_is_alive(invoke, store, tmp_path):
    """Two processes writing one run would interleave its metrics: a live owner blocks a resume."""
    assert invoke("run", "linear", "--epochs", 10, "--checkpoint-every", 5, "--tracking-uri", store).exit_code == 0
    client, run = only_run(store, "linear")
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "regfw", "run"])
    try:
        client.set_tag(run.info.run_id, "regfw.pid", str(owner.pid))
        client.update_run(run.info.run_id, status="RUNNING")
        result = invoke("resume", run.info.run_id, "--tracking-uri", store)
        assert result.exit_code == 1
        assert_one_line_error(result.stderr, "is still running", str(owner.pid))
    finally:
        owner.kill()
        owner.wait()
    result = invoke("resume", run.info.run_id, "--tracking-uri", store)  # its process is gone: resumable
    assert result.exit_code == 0, result.stderr
    assert only_run(store, "linear")[1].info.status == "FINISHED"


def test_checkpoints_need_a_tracked_run(invoke):
    result = invoke("run", "linear", "--no-track", "--checkpoint-every", 5)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "--no-track")


@pytest.mark.slow
# -- concurrency ---------------------------------------------------------------------------------
def test_eight_runs_at_once_on_a_fresh_store(tmp_path):
    store = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"  # does not exist yet: created by the racers
    procs = [start(["run", "linear", "--epochs", 60, "--log-every", 1, "--seed", i, "--tracking-uri", store, "-q"],
                   tmp_path) for i in range(8)]
    results = [(p.wait(timeout=540), p.communicate()[1]) for p in procs]
    assert all(code == 0 for code, _ in results), [err for _, err in results]
    client, runs = runs_of(store, "linear")
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(int(r.data.params["seed"]) for r in runs) == list(range(8))
    for run in runs:
        assert steps(client, run.info.run_id) == list(range(1, 61))
        assert "final_train_loss" in metrics_of(run)


# -- tracking store trouble ----------------------------------------------------------------------
def test_unreachable_tracking_server_fails_before_training(invoke):
    port = free_port()  # bound then released: nothing listens there
    result = invoke("run", "linear", "--tracking-uri", f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, f"http://127.0.0.1:{port}", "unreachable")
    assert "epoch" not in result.stderr and result.stdout == ""


def test_corrupt_database_fails_in_one_line(invoke, tmp_path):
    db = tmp_path / "broken" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not an SQLite database\n" * 200)
    result = invoke("run", "linear", "--tracking-uri", f"sqlite:///{db}")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "tracking store", str(db), "is not a SQLite database")
    assert result.stdout == ""


def test_read_only_database_fails_in_one_line(invoke, store):
    assert invoke("run", "linear", "--epochs", 2, "--tracking-uri", store).exit_code == 0
    db = Path(db_path(store))
    with read_only(db, 0o444):  # a new process, as a user's next command: this one still holds the database open
        result = subprocess.run([REGFW, "run", "linear", "--epochs", "2", "--tracking-uri", store],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, "cannot use tracking store", "read-only")
    assert "epoch" not in result.stderr


@pytest.mark.slow
def test_a_real_mlflow_server_receives_the_run_over_http(invoke, tmp_path, mlflow_server):
    uri = mlflow_server
    result = invoke("run", "linear", "--epochs", 50, "--log-every", 1, "--tracking-uri", uri)
    assert result.exit_code == 0, result.stderr
    client, run = only_run(uri, "linear")
    assert run.info.status == "FINISHED" and run.info.run_id in result.stdout
    assert run.data.params["train.epochs"] == "50" and run.data.tags["regfw.experiment"] == "linear"
    assert steps(client, run.info.run_id) == list(range(1, 51))
    assert {"config.yaml", "model_state_dict.pt"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    local = client.download_artifacts(run.info.run_id, "model_state_dict.pt", str(tmp_path / "dl"))
    assert torch.load(local, weights_only=True)["weight"].item() == pytest.approx(metrics_of(run)["learned.weight"])
    # A server is a shared namespace: its Default experiment is left as it was (issue 27)...
    assert client.get_experiment("0").lifecycle_stage == "active"
    # ...and under -q nothing but errors is printed: not MLflow's "View run / View experiment" links.
    quiet = invoke("run", "linear", "--epochs", 5, "--tracking-uri", uri, "-q")
    assert quiet.exit_code == 0 and "View run" not in quiet.stdout + quiet.stderr and quiet.stdout == ""


# -- broken plugins ------------------------------------------------------------------------------
RAISES_IN_FACTORY = """
from regfw import hookimpl

def _model(in_features, out_features):
    raise RuntimeError("acme weights file is missing")

def _data(generator):
    raise OSError("acme data server said no")

@hookimpl
def register_models(register):
    register("acme-net", _model, description="raises when built",
             params={"in_features": 1, "out_features": 1})

@hookimpl
def register_datasets(register):
    register("acme-data", _data, description="raises when built")
"""

BROKEN_IMPORT = 'raise ImportError("acme_broken needs a library that is not installed")\n'


@pytest.mark.parametrize("swap, kind, name, message", [
    ("--model", "model", "acme-net", "RuntimeError: acme weights file is missing"),
    ("--dataset", "dataset", "acme-data", "OSError: acme data server said no"),
], ids=["model-factory", "dataset-factory"])
def test_plugin_factory_raising_fails_before_any_run_naming_the_plugin(fake_dist, invoke, store, swap, kind, name,
                                                                      message):
    """The parts are built before the MLflow run exists: a factory that raises is one line and no run."""
    fake_dist("acme-faulty", {"acme_faulty": RAISES_IN_FACTORY}, {"acme-faulty": "acme_faulty"})
    result = invoke("run", "linear", swap, name, "--tracking-uri", store)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, f"{kind} '{name}' from plugin 'acme-faulty' failed", message)
    client = MlflowClient(store) if Path(store[len("sqlite:///"):]).exists() else None
    found = client.get_experiment_by_name("linear") if client else None
    assert found is None or not client.search_runs([found.experiment_id]), "a run was created for a plugin's failure"
    # the next run, without the faulty part, is unaffected
    assert invoke("run", "linear", "--epochs", 3, "--tracking-uri", store).exit_code == 0


def test_runs_still_work_beside_a_plugin_that_fails_to_import(fake_dist, invoke, store):
    """Extends test_plugins.py (listing): a whole run goes through, with a warning naming the plugin."""
    fake_dist("acme-broken", {"acme_broken": BROKEN_IMPORT}, {"acme-broken": "acme_broken"})
    result = invoke("run", "linear", "--epochs", 20, "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert "plugin(s) 'acme-broken' failed to load" in result.stderr and "Traceback" not in result.stderr
    assert only_run(store, "linear")[1].info.status == "FINISHED"


# -- missing data --------------------------------------------------------------------------------
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.mark.parametrize("download", ["true", "false"])
def test_missing_mnist_files_without_network_is_one_line(invoke, tmp_path, monkeypatch, download):
    # No network: every download goes through a proxy that refuses connections.
    dead = f"http://127.0.0.1:{free_port()}"
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, dead)
    monkeypatch.setenv("REGFW_DATA", str(tmp_path / "data-home"))
    root = tmp_path / "empty"
    root.mkdir()
    result = invoke("run", "mnist", "--no-track", "--epochs", 1, "--set", f"dataset.root={root}",
                    "--set", f"dataset.download={download}")
    assert result.exit_code == 1
    line = assert_one_line_error(result.stderr, str(root))
    assert all(name in line for name in MNIST_FILES), line


# -- security ------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this runs a command: what a hostile checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_checkpoint_is_never_unpickled(invoke, store, tmp_path):
    """torch.load(weights_only=True): a checkpoint carrying code is refused, and the code never runs."""
    assert invoke("run", "linear", "--epochs", 20, "--checkpoint-every", 10, "--tracking-uri", store).exit_code == 0
    client, run = only_run(store, "linear")
    marker = tmp_path / "pwned"
    artifact_dir = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoint"
    for slot in artifact_dir.glob("*.pt"):
        torch.save({"format": 1, "epoch": 99, "model": _Payload(marker)}, slot)
    client.set_terminated(run.info.run_id, "KILLED")
    result = invoke("resume", run.info.run_id, "--tracking-uri", store)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "has no readable checkpoint", "UnpicklingError")
    assert not marker.exists()
    # the same file loaded the unsafe way would run the payload: the test can fail
    torch.load(next(artifact_dir.glob("*.pt")), weights_only=False)
    assert marker.exists()


def test_ui_binds_localhost_by_default_and_warns_otherwise(tmp_path, store):
    """test_ui.py shows the default: 127.0.0.1, said on the first line. Any other address is warned about."""
    port = free_port()
    proc = subprocess.Popen([REGFW, "ui", "--host", "127.0.0.2", "--port", str(port), "--tracking-uri", store],
                            cwd=tmp_path, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().startswith(f"MLflow UI at http://127.0.0.2:{port}")
        assert proc.stderr.readline() == "regfw: warning: binding 127.0.0.2: the UI will be reachable from other machines\n"
        seen = []  # the rest of its output, read as it comes: a full pipe would stall the server
        for stream in (proc.stdout, proc.stderr):
            threading.Thread(target=lambda s=stream: seen.extend(s), daemon=True).start()
        # ... and the page answers at that address (MLflow's middleware refuses other hosts unless told)
        deadline, status = time.monotonic() + 150, None  # MLflow's server starts slowly on a busy 2-core machine
        while status != 200 and time.monotonic() < deadline:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.2:{port}/", timeout=5).status
            except OSError:
                time.sleep(0.5)
        assert status == 200, "".join(seen)[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    from regfw.cli.ui import ui

    assert next(p for p in ui.params if p.name == "host").default == "127.0.0.1"


@pytest.mark.parametrize("redelivered", [True, False])
def test_an_interrupt_raised_inside_a_gc_callback_is_sent_again_not_printed(redelivered):
    """A SIGTERM whose handler runs inside a weakref callback raises where Python can only print
    and drop it. regfw's hook sends it again, so it ends the work in ordinary code; without the
    hook (the control case) the traceback is printed and the interrupt is lost."""
    code = textwrap.dedent(f"""
        import signal, time, weakref
        from regfw.interrupts import Interrupted, redeliver_lost_interrupts, terminate_handler
        if {redelivered}:
            redeliver_lost_interrupts()
        signal.signal(signal.SIGTERM, terminate_handler)
        class Thing: pass
        def callback(ref):
            signal.raise_signal(signal.SIGTERM)  # its handler runs here, inside the callback
            x = 1
        thing = Thing(); ref = weakref.ref(thing, callback)
        try:
            del thing
            time.sleep(0.5)  # ordinary code, where a signal sent again is handled
            print("ran on")
        except Interrupted:
            print("interrupted")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if redelivered:
        assert proc.stdout.strip() == "interrupted" and "Traceback" not in proc.stderr, proc.stderr
    else:
        assert proc.stdout.strip() == "ran on" and "Exception ignored" in proc.stderr
