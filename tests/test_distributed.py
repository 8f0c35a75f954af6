"""Data-parallel runs (``regfw run --nproc 2``): real torchrun processes on loopback, gloo on the
CPU, a real SQLite MLflow store. One run is recorded, its metrics equal a single-process run's,
a rank that dies ends the run FAILED, and Ctrl-C ends it KILLED and resumable on as many ranks.

Each launch costs a few seconds of imports per process: the tests keep the data and the epochs small.
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
from mlflow import MlflowClient

from regfw.distributed import DEFAULT_TIMEOUT, ENV_TIMEOUT, shard_bounds, worker_argv
from regfw.store.keys import stored

REGFW = str(Path(sys.executable).with_name("regfw"))
TOLERANCE = dict(rel=1e-4, abs=1e-6)  # docs/scaling.md states this tolerance
# binary on 400 training rows: a global batch of 33 splits 17/16 and leaves a last batch of 4
BINARY = ["binary", "--set", "dataset.n_per_class=300", "--set", "dataset.n_train_per_class=200",
          "--batch-size", "33", "--log-every", "1"]


def regfw(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([REGFW, *map(str, args)], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=300)


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}


def start(args, cwd) -> subprocess.Popen:
    return subprocess.Popen([REGFW, *map(str, args)], cwd=cwd, env=clean_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun's workers run in sessions of their own)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def rank_pid(parent: int, rank: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in descendants(parent):
            try:
                if f"RANK={rank}".encode() in (Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")):
                    return pid
            except OSError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"no process of rank {rank} under {parent}")


def stop_all(proc: subprocess.Popen, pids: list[int]) -> None:
    """Leave nothing behind: the launcher and the workers it started, by their own pids."""
    for pid in [proc.pid, *pids]:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.communicate(timeout=30)


def tag_value(uri: str, key: str) -> str | None:
    """Read a tag straight from the SQLite file: cheap polling while the run writes."""
    try:
        with sqlite3.connect(uri[len("sqlite:///"):], timeout=1) as db:
            row = db.execute("select value from tags where key = ?", (key,)).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def wait_for_tag(uri: str, key: str, proc: subprocess.Popen, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        value = tag_value(uri, key)
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError(f"tag {key} never appeared (exit {proc.poll()})")


def only_run(uri: str, experiment: str):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def curve(client, run, name) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, stored(name)))


# -- fast: the pieces that need no second process --------------------------------------------------
def test_shards_cover_every_row_once_and_differ_by_at_most_one():
    for world in (1, 2, 3, 5):
        for rows in (0, 1, 2, 4, 33, 100):
            spans = [shard_bounds(rows, rank, world) for rank in range(world)]
            assert [i for lo, hi in spans for i in range(lo, hi)] == list(range(rows))
            sizes = [hi - lo for lo, hi in spans]
            assert max(sizes) - min(sizes) <= 1


def test_each_process_runs_the_command_without_nproc():
    assert worker_argv(["run", "mnist", "--nproc", "2", "--epochs", "3"]) == ["run", "mnist", "--epochs", "3"]
    assert worker_argv(["resume", "abc", "--nproc=2", "-q"]) == ["resume", "abc", "-q"]


@pytest.mark.slow
@pytest.mark.parametrize("args, needle", [
    (["manual-gd"], "train.grad=formula"),
    (["linear", "--device", "mps"], "need --device cuda or cpu"),
    (["linear", "--device", "cuda:1"], "give --device cuda, not cuda:1"),
    (["linear", "--nproc", "2"], "under torchrun leave it out"),
    (["linear", "--sweep", "--set", "optimizer.lr=0.1,0.2"], "data-parallel (--nproc, torchrun) trains one"),
])
def test_what_cannot_run_data_parallel_is_one_line_and_no_run(invoke, store, monkeypatch, args, needle):
    """As torchrun starts a process (its variables set), refused before joining any other process."""
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    result = invoke("run", *args, "--tracking-uri", store, "--epochs", 1)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regfw: error: ") and needle in lines[0], result.stderr
    assert MlflowClient(store).search_experiments(filter_string="name != 'Default'") == []


def test_the_docs_state_the_tolerance_and_the_timeout():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "scaling.md").read_text(encoding="utf-8")
    assert f"within a relative {TOLERANCE['rel']:.0e}".replace("e-0", "e-") in doc
    assert ENV_TIMEOUT in doc and f"(default {DEFAULT_TIMEOUT:g})" in doc


# -- real torchrun processes -------------------------------------------------------------------------
@pytest.mark.slow
def test_two_processes_record_one_run_equal_to_one_process(invoke, store, tmp_path):
    alone = invoke("run", *BINARY, "--epochs", 3, "--tracking-uri", store, "--experiment-name", "alone")
    assert alone.exit_code == 0, alone.stderr
    both = regfw("run", *BINARY, "--epochs", 3, "--nproc", 2, "--tracking-uri", store, "--experiment-name", "ddp",
                 cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    assert "Traceback" not in both.stderr
    assert both.stdout.count("binary finished after 3 epochs") == 1  # rank 1 prints nothing
    client, ddp = only_run(store, "ddp")
    _, one = only_run(store, "alone")
    assert ddp.info.status == "FINISHED"
    assert ddp.data.tags["regfw.world_size"] == "2" and ddp.data.tags["regfw.dist_backend"] == "gloo"
    assert "regfw.world_size" not in one.data.tags
    assert ddp.data.params == one.data.params  # the same configuration: --batch-size is the global batch
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        mine, theirs = curve(client, ddp, key), curve(client, one, key)
        assert [s for s, _ in mine] == [s for s, _ in theirs] == [1, 2, 3], key  # logged once per epoch
        assert [v for _, v in mine] == pytest.approx([v for _, v in theirs], **TOLERANCE), key
    names = {a.path for a in client.list_artifacts(ddp.info.run_id)}
    assert names == {a.path for a in client.list_artifacts(one.info.run_id)}  # artifacts once, the same set


@pytest.mark.slow
def test_a_rank_that_dies_ends_the_run_failed_within_bounded_time(store, tmp_path):
    proc = start(["run", *BINARY, "--epochs", 100000, "--nproc", 2, "--tracking-uri", store,
                  "--experiment-name", "dies"], tmp_path)
    pids = []
    try:
        wait_for_tag(store, "regfw.world_size", proc)  # rank 0 has created the run
        pids = descendants(proc.pid)
        victim = rank_pid(proc.pid, 1)
        time.sleep(1.0)  # well into training
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=90)
        took = time.monotonic() - killed
    finally:
        stop_all(proc, pids)
    assert proc.returncode != 0
    assert took < 60, took  # the run ends; nothing waits for the process-group timeout
    _, run = only_run(store, "dies")
    assert run.info.status == "FAILED"
    reason = run.data.tags["regfw.failure"]
    assert reason.startswith("process 1 of 2 died"), reason
    assert f"regfw: error: {reason}" in err
    assert "process 1: killed by SIGKILL" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_ctrl_c_ends_the_run_killed_and_resume_needs_as_many_processes(invoke, store, tmp_path):
    """linear is full batch: each rank takes half of the 100 rows every epoch (pointless, but right)."""
    args = ["linear", "--epochs", 800, "--tracking-uri", store]
    proc = start(["run", *args, "--checkpoint-every", 100, "--nproc", 2, "--experiment-name", "ctrl-c"], tmp_path)
    pids = []
    try:
        wait_for_tag(store, "regfw.checkpoint_epoch", proc)
        pids = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends torchrun; it passes it to every rank
        _, err = proc.communicate(timeout=90)
    finally:
        stop_all(proc, pids)
    assert proc.returncode == 130, err
    client, run = only_run(store, "ctrl-c")
    run_id = run.info.run_id
    assert run.info.status == "KILLED", run.data.tags.get("regfw.failure")
    assert run.data.tags["regfw.failure"].startswith("interrupted at epoch ")
    kept = curve(client, run, "train_loss")
    assert kept and kept[-1][0] <= int(run.data.tags["regfw.epochs_done"]) < 800

    other = invoke("resume", run_id, "--nproc", 3, "--tracking-uri", store)
    assert other.exit_code == 1
    assert other.stderr.strip().splitlines() == [
        f"regfw: error: run {run_id} was trained on 2 process(es), not 3: its checkpoint continues exactly only "
        f"on as many; resume it with `regfw resume {run_id}` (or `torchrun --nproc-per-node 2 -m regfw resume "
        f"{run_id}`), or start a new run"]

    again = regfw("resume", run_id, "--tracking-uri", store, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    client, run = only_run(store, "ctrl-c")
    assert run.info.status == "FINISHED" and run.data.tags["regfw.epochs_done"] == "800"
    alone = invoke("run", *args, "--experiment-name", "alone")
    assert alone.exit_code == 0, alone.stderr
    _, one = only_run(store, "alone")
    for key in ("final_train_loss", "learned.weight", "learned.bias"):
        assert run.data.metrics[stored(key)] == pytest.approx(one.data.metrics[stored(key)], **TOLERANCE), key
