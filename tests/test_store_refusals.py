"""The direct SQLite path refuses what MLflow refuses, and leaves nothing MLflow would not.

Each case is one real event on a real store (a run deleted or garbage-collected while a real
``regfw run`` process writes it, an experiment deleted, a name MLflow refuses, a changed schema),
played twice: once on the direct path, once with ``REGFW_DIRECT_STORE=0`` (every write through
``MlflowClient``). Both must end the same way: refused or not, the exit code, the rows left.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regfw.store import open_client
from regfw.store.direct import ENV_SWITCH, DirectStore
from regfw.store.tracker import MlflowTracker
from regfw.store.uri import sqlite_path

from conftest import REGFW

PATHS = {"direct": "1", "mlflow": "0"}


def _env(path: str) -> dict:
    return os.environ | {ENV_SWITCH: PATHS[path], "OMP_NUM_THREADS": "1"}


def _rows(db_path: Path, run_id: str) -> int:
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run_id,)).fetchone()[0]


def _paused_while_writing(store: str, tmp_path: Path, path: str):
    """A real ``regfw run`` process, stopped (SIGSTOP) once its run has metric rows and at a
    moment it holds no write transaction; returns it and its run's id."""
    db_path = sqlite_path(store)
    MlflowTracker(store, "quadratic-param").open()  # the store and experiment exist: the direct path applies
    proc = subprocess.Popen([REGFW, "run", "quadratic-param", "--epochs", "100000", "-q", "--tracking-uri", store],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env(path))
    deadline = time.monotonic() + 120
    run_id = None
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        with sqlite3.connect(db_path, timeout=5) as db:
            found = db.execute("SELECT run_uuid FROM runs WHERE status = 'RUNNING' AND lifecycle_stage = 'active'").fetchone()
        if found and _rows(db_path, found[0]):
            run_id = found[0]
            break
    assert run_id is not None, proc.communicate()
    for _ in range(200):  # stopped outside a transaction, else MLflow's delete would wait on its lock
        proc.send_signal(signal.SIGSTOP)
        db = sqlite3.connect(db_path, timeout=0.05, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
            return proc, run_id
        except sqlite3.OperationalError:
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        finally:
            db.close()
    proc.kill()
    pytest.fail("the run never left its write transaction")


def _finish(proc) -> tuple[int, list[str]]:
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.strip().splitlines()


@pytest.mark.slow
@pytest.mark.parametrize("gc", [False, True], ids=["deleted", "garbage-collected"])
def test_a_run_deleted_while_it_is_written_gets_nothing_more_on_either_path(store, tmp_path, gc):
    outcomes = {}
    for path in PATHS:
        proc, run_id = _paused_while_writing(store, tmp_path, path)
        open_client(store).delete_run(run_id)  # what `mlflow runs delete` and the UI's delete do
        if gc:
            done = subprocess.run([str(Path(REGFW).with_name("mlflow")), "gc", "--backend-store-uri", store, "--tracking-uri", store,
                                   "--run-ids", run_id], capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
        rows = _rows(sqlite_path(store), run_id)
        code, lines = _finish(proc)
        folder = sqlite_path(store).parent / "artifacts" / "quadratic-param" / run_id
        with sqlite3.connect(sqlite_path(store)) as db:
            orphans = db.execute("PRAGMA foreign_key_check").fetchall()
        assert len(lines) == 1 and lines[0].startswith("regfw: error: the run was deleted"), (path, code, lines, rows)
        outcomes[path] = (code, _rows(sqlite_path(store), run_id) - rows, orphans, folder.exists())
    assert outcomes["direct"] == outcomes["mlflow"] == (1, 0, [], False), outcomes


def test_a_run_is_not_created_in_an_experiment_deleted_after_the_store_was_opened(store):
    """A sweep holds the store open; the experiment is deleted before its next point."""
    outcomes = {}
    for path in PATHS:
        name = f"held-{path}"
        tracker = MlflowTracker(store, name).open()
        if path == "mlflow":
            tracker.mlflow()
            tracker.direct = None
        assert (tracker.direct is not None) == (path == "direct")
        open_client(store).delete_experiment(tracker.experiment_id)
        try:
            tracker.start("next point", {"seed": 1}, {})
            outcomes[path] = "created"
        except Exception as exc:  # noqa: BLE001 - the refusal's text is compared
            outcomes[path] = str(exc).replace(tracker.experiment_id, "ID")
        with sqlite3.connect(sqlite_path(store)) as db:
            assert db.execute("SELECT COUNT(*) FROM runs WHERE experiment_id = ?",
                              (int(tracker.experiment_id),)).fetchone()[0] == 0
    assert outcomes["direct"] == outcomes["mlflow"]
    assert outcomes["direct"] == "The experiment ID must be in the 'active' state. Current state is deleted."


@pytest.mark.parametrize("key", ["acc@1", "loss(val)", "x/../y", "k" * 300])
def test_a_metric_name_mlflow_refuses_is_refused_before_its_first_row_on_either_path(store, key):
    outcomes = {}
    for path in PATHS:
        tracker = MlflowTracker(store, "names").open()
        if path == "mlflow":
            tracker.mlflow()
            tracker.direct = None
        tracker.start("r", {}, {})
        try:
            tracker.log_metrics([("fine", 1.0, 1), (key, 1.0, 1)])
            tracker.flush()
            outcomes[path] = "written"
        except Exception as exc:  # noqa: BLE001 - the refusal's text is compared
            outcomes[path] = str(exc)
        tracker.end("FAILED")
        assert _rows(sqlite_path(store), tracker.run_id) == 0  # not even the good name's row of that batch
    assert outcomes["direct"] == outcomes["mlflow"]
    assert outcomes["direct"].startswith("metric ") and "\n" not in outcomes["direct"]
    assert "Names may" in outcomes["direct"] or "exceeds the maximum length of 250" in outcomes["direct"]


def test_a_param_mlflow_refuses_leaves_no_run_behind(store, tmp_path):
    """MLflow's own message, whole, and no run: the names are checked before the run is created."""
    tracker = MlflowTracker(store, "names").open()
    with pytest.raises(Exception) as refused:
        tracker.start("r", {"bad?name": 1}, {})
    assert "Names may only contain alphanumerics" in str(refused.value) and str(refused.value).endswith(".")
    with sqlite3.connect(sqlite_path(store)) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_a_store_whose_columns_differ_is_written_through_mlflow(store, tmp_path):
    """A renamed column: the direct path sees it in the table definitions and stands aside."""
    MlflowTracker(store, "linear").open()
    assert DirectStore.open(store, "linear") is not None
    with sqlite3.connect(sqlite_path(store)) as db:
        db.execute("ALTER TABLE latest_metrics RENAME COLUMN is_nan TO nan_flag")
    assert DirectStore.open(store, "linear") is None
    command = ["run", "linear", "--epochs", "2", "-q", "--tracking-uri", store]
    quiet = subprocess.run([REGFW, *command], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "through MLflow's own client" not in quiet.stderr  # a note only where asked for
    result = subprocess.run([REGFW, "-v", *command], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    lines = result.stderr.strip().splitlines()
    notes = [line for line in lines if "no column is_nan" in line and "through MLflow's own client" in line]
    assert len(notes) == 1, result.stderr  # said once, under -v
    # MLflow's own path cannot write that table either: its error, in one line, and no direct row
    assert result.returncode == 1 and len(lines) == 2 and lines[1].startswith("regfw: error: cannot use tracking store")
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    with sqlite3.connect(sqlite_path(store)) as db:
        assert db.execute("SELECT COUNT(*) FROM latest_metrics").fetchone()[0] == 0


def test_the_switch_sends_every_write_through_mlflow(store, monkeypatch):
    MlflowTracker(store, "linear").open()
    assert DirectStore.open(store, "linear") is not None
    monkeypatch.setenv(ENV_SWITCH, "0")
    assert DirectStore.open(store, "linear") is None
    tracker = MlflowTracker(store, "linear").open()
    assert tracker.direct is None and tracker.client is not None


OLDER_STORE = Path(__file__).parent / "data" / "mlflow-3.10.0-store.db.gz"  # how it was made: tests/data/README.md


def _tables(db_path: Path) -> tuple[int, str]:
    with sqlite3.connect(db_path) as db:
        count = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        return count, db.execute("SELECT version_num FROM alembic_version").fetchone()[0]


@pytest.mark.parametrize("command", [["run", "linear", "--epochs", "1", "-q"], ["runs"]], ids=["run", "runs"])
def test_a_store_written_by_an_older_mlflow_is_refused_whole_and_never_upgraded(tmp_path, command):
    import gzip

    db_path = tmp_path / "older" / "mlflow.db"
    db_path.parent.mkdir()
    db_path.write_bytes(gzip.decompress(OLDER_STORE.read_bytes()))
    before = _tables(db_path)
    uri = f"sqlite:///{db_path}"
    result = subprocess.run([REGFW, *command, "--tracking-uri", uri], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    # MLflow's own message, whole: what it found, what it expected, and its advice to the end
    assert f"found version {before[1]}" in lines[0] and "'mlflow db upgrade <database_uri>'" in lines[0]
    assert lines[0].endswith("more detail."), lines[0]
    assert _tables(db_path) == before  # the older MLflow can still open it
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


def test_a_store_written_by_a_newer_mlflow_is_called_newer(store, tmp_path):
    MlflowTracker(store, "linear").open()
    with sqlite3.connect(sqlite_path(store)) as db:
        db.execute("UPDATE alembic_version SET version_num = 'f0f0f0f0f0f0'")  # a revision no installed MLflow ships
    result = subprocess.run([REGFW, "run", "linear", "--epochs", "1", "-q", "--tracking-uri", store],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "written by a newer MLflow" in lines[0], result.stderr
    assert "out-of-date" not in lines[0]


def _revision(db_path: Path) -> str | None:
    try:
        with sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, timeout=0.05) as db:
            return db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    except (sqlite3.Error, TypeError):  # not made yet, locked, or no row yet
        return None


def test_a_store_another_client_is_making_is_waited_for_not_called_older(tmp_path):
    """A plain MLflow client makes a new store (it passes through every older revision); regfw,
    opened on it meanwhile, waits for the head instead of refusing it as an older MLflow's."""
    from regfw.store.schema import migration_revisions
    from regfw.store.uri import check_reachable

    heads = migration_revisions()[1]
    for attempt in range(5):  # until regfw is seen to open the store half-way through its making
        db_path = tmp_path / str(attempt) / "mlflow.db"
        db_path.parent.mkdir()
        uri = f"sqlite:///{db_path}"
        maker = subprocess.Popen([sys.executable, "-c",
                                  f"from mlflow import MlflowClient; MlflowClient(tracking_uri={uri!r}).search_experiments()"])
        try:
            deadline = time.monotonic() + 120
            while (found := _revision(db_path)) is None and maker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            if found is None or found in heads:
                continue  # made before it could be caught half-way: try again
            check_reachable(uri)  # must neither raise nor return before the store is whole
            assert _revision(db_path) in heads
            assert maker.wait(timeout=120) == 0
            return
        finally:
            if maker.poll() is None:
                maker.kill()
                maker.wait()
    pytest.fail("the store was never caught half-made")
