"""Reproducing runs: the provenance a run records (git dirty flag, data fingerprint, threads,
versions), `regfw rerun RUN_ID [--verify]` and `regfw run/sweep --from RUN_ID`, through the CLI on
real SQLite stores."""

from __future__ import annotations

import subprocess

import pytest
from mlflow import MlflowClient

from regfw.store import tags as T


def runs_of(store: str, experiment: str = "linear"):
    client = MlflowClient(store)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def only_run_id(store: str, experiment: str = "linear") -> str:
    _, runs = runs_of(store, experiment)
    assert len(runs) == 1
    return runs[0].info.run_id


def git(folder, *args):
    subprocess.run(["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args], cwd=folder, check=True,
                   capture_output=True)


# --- what a run records ------------------------------------------------------------------------

def test_a_run_records_git_dirty_threads_versions_and_a_data_fingerprint(invoke, store, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text("x = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "one")
    monkeypatch.chdir(repo)
    args = ["run", "linear", "--epochs", "2", "--device", "cpu", "--threads", "1", "--tracking-uri", store, "-q"]
    assert invoke(*args).exit_code == 0
    (repo / "train.py").write_text("x = 2\n")  # a tracked file changed: the tree is dirty
    assert invoke(*args, "--set", "dataset.noise=0.5").exit_code == 0
    _, (clean, dirty) = runs_of(store)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert clean.data.tags[T.GIT_COMMIT] == dirty.data.tags[T.GIT_COMMIT] == commit
    assert clean.data.tags[T.GIT_DIRTY] == "false" and dirty.data.tags[T.GIT_DIRTY] == "true"
    assert clean.data.tags[T.THREADS] == "1"
    import platform

    import mlflow

    assert clean.data.tags[T.PYTHON_VERSION] == platform.python_version()
    assert clean.data.tags[T.MLFLOW_VERSION] == mlflow.__version__
    # a generator parameter changed: another fingerprint; the same config: the same one
    first, second = clean.data.tags[T.DATA_FINGERPRINT], dirty.data.tags[T.DATA_FINGERPRINT]
    assert len(first) == 64 and first != second
    assert invoke(*args).exit_code == 0
    _, runs = runs_of(store)
    assert runs[-1].data.tags[T.DATA_FINGERPRINT] == first
