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


# --- regfw rerun -------------------------------------------------------------------------------

def test_rerun_verify_of_a_plain_run_is_identical_and_tags_both_runs(invoke, store):
    assert invoke("run", "linear", "--epochs", "5", "--device", "cpu", "--tracking-uri", store, "-q").exit_code == 0
    original = only_run_id(store)
    result = invoke("rerun", original[:8], "--verify", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert f"rerun of run {original}" in result.stdout
    assert "environment as recorded" in result.stdout
    verdict = result.stdout.strip().splitlines()[-1]
    assert verdict.startswith("identical: ") and "bit for bit" in verdict
    client, (first, again) = runs_of(store)
    assert again.data.tags[T.RERUN_OF] == original
    assert first.data.tags[T.VERDICT] == again.data.tags[T.VERDICT] == "identical"
    assert first.data.tags[T.VERIFIED_BY] == again.info.run_id
    assert again.data.params == first.data.params  # the same configuration, from config.yaml
    # the count covers every curve point (5 epochs), the summary metrics and the parameters (2 + learned)
    assert int(verdict.split()[1]) >= 5 + 2


def test_rerun_verify_reports_the_first_difference_and_exits_non_zero(invoke, store):
    assert invoke("run", "linear", "--epochs", "4", "--device", "cpu", "--tracking-uri", store, "-q").exit_code == 0
    original = only_run_id(store)
    result = invoke("rerun", original, "--verify", "--set", "optimizer.lr=0.02", "--tracking-uri", store)
    assert result.exit_code == 4
    lines = result.stdout.splitlines()
    row = next(line.split() for line in lines if line.strip().startswith("optimizer.lr"))
    assert row == ["optimizer.lr", "0.01", "0.02"]
    verdict = next(line for line in lines if line.startswith("differs: "))
    # the first epoch's loss is computed before any step: the first difference is at step 2
    assert "train_loss at step 2: " in verdict and "(original) vs " in verdict
    differing, total = verdict.rsplit("; ", 1)[1].split(" values differ")[0].split(" of ")
    assert 0 < int(differing) <= int(total)
    assert "configuration differs from the original's: optimizer.lr" in result.stdout
    _, runs = runs_of(store)
    assert {r.data.tags.get(T.VERDICT) for r in runs} == {"differs"}
    # a looser tolerance does not hide a changed learning rate, and says which tolerance it used
    result = invoke("rerun", original, "--verify", "--tolerance", "1e-9", "--set", "optimizer.lr=0.02",
                    "--tracking-uri", store)
    assert result.exit_code == 4
    result = invoke("rerun", original, "--verify", "--tolerance", "1e-6", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert "within 1e-06: " in result.stdout and "all equal within relative 1e-06" in result.stdout


def test_rerun_of_a_run_whose_state_dict_was_deleted_names_what_was_not_compared(invoke, store):
    assert invoke("run", "linear", "--epochs", "3", "--device", "cpu", "--tracking-uri", store, "-q").exit_code == 0
    original = only_run_id(store)
    client = MlflowClient(store)
    from urllib.parse import urlparse
    from pathlib import Path

    folder = Path(urlparse(client.get_run(original).info.artifact_uri).path)
    (folder / "model_state_dict.pt").unlink()
    result = invoke("rerun", original, "--verify", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    verdict = result.stdout.strip().splitlines()[-1]
    assert verdict.startswith("identical: ")
    assert "not compared: final parameters (model_state_dict.pt is missing or unreadable in the original run)" in verdict


def test_rerun_refuses_in_one_line_a_config_that_no_longer_validates(invoke, store):
    assert invoke("run", "linear", "--epochs", "3", "--device", "cpu", "--tracking-uri", store, "-q").exit_code == 0
    original = only_run_id(store)
    from pathlib import Path
    from urllib.parse import urlparse

    client = MlflowClient(store)
    config = Path(urlparse(client.get_run(original).info.artifact_uri).path) / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.01", "lr: -1.0"))  # as if the plugin now refused it
    result = invoke("rerun", original, "--tracking-uri", store)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"regfw: error: run {original} cannot be "
                                                                       "reproduced with this installation: ")
    assert "Traceback" not in result.stderr
    _, runs = runs_of(store)
    assert len(runs) == 1  # no run


def test_rerun_of_an_unknown_run_is_one_line(invoke, store):
    assert invoke("run", "linear", "--epochs", "1", "--device", "cpu", "--tracking-uri", store, "-q").exit_code == 0
    result = invoke("rerun", "0123abcd", "--tracking-uri", store)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "0123abcd" in result.stderr


def test_rerun_in_another_process_reports_a_different_thread_count(regfw_script, store):
    args = ["--epochs", "3", "--device", "cpu", "--tracking-uri", store, "-q"]
    done = regfw_script("run", "linear", *args, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    original = only_run_id(store)
    done = regfw_script("rerun", original, "--verify", "--tracking-uri", store, env={"OMP_NUM_THREADS": "2"})
    assert done.returncode in (0, 4), done.stderr
    row = next(line.split() for line in done.stdout.splitlines() if line.strip().startswith("threads"))
    assert row == ["threads", "1", "2"]
    if done.returncode == 4:  # two threads may sum in another order: then the report says why
        assert "may come from what differs in the environment: threads" in done.stdout


# --- run/sweep --from RUN_ID --------------------------------------------------------------------

def test_run_from_a_run_starts_from_its_config_and_records_it(invoke, store, tmp_path):
    args = ["--device", "cpu", "--tracking-uri", store, "-q"]
    assert invoke("run", "linear", "--epochs", "3", "--set", "dataset.noise=0.25", *args).exit_code == 0
    original = only_run_id(store)
    result = invoke("run", "--from", original[:10], "--set", "optimizer.lr=0.05", *args)
    assert result.exit_code == 0, result.stderr
    _, (first, second) = runs_of(store)
    assert second.data.tags[T.STARTED_FROM] == original
    assert second.data.params["optimizer.lr"] == "0.05"
    changed = {k for k in first.data.params if first.data.params[k] != second.data.params.get(k)}
    assert changed == {"optimizer.lr"}  # the epochs and the noise come from the run, not the experiment
    # --config lays over the run's configuration; flags over both; EXPERIMENT may be given if it matches
    file = tmp_path / "over.yaml"
    file.write_text("train: {epochs: 2}\noptimizer: {params: {momentum: 0.5}}\n")
    assert invoke("run", "linear", "--from", original, "--config", file, "--seed", "3", *args).exit_code == 0
    third = runs_of(store)[1][-1].data.params
    assert (third["train.epochs"], third["optimizer.momentum"], third["seed"]) == ("2", "0.5", "3")
    assert third["dataset.noise"] == "0.25" and third["optimizer.lr"] == "0.01"


def test_run_from_refuses_another_experiment_and_a_missing_run_in_one_line(invoke, store):
    args = ["--device", "cpu", "--tracking-uri", store, "-q"]
    assert invoke("run", "linear", "--epochs", "1", *args).exit_code == 0
    original = only_run_id(store)
    result = invoke("run", "quadratic-param", "--from", original, *args)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "is experiment 'linear', not 'quadratic-param'" in result.stderr
    result = invoke("run", "--from", "feedbeef", *args)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "feedbeef" in result.stderr
    result = invoke("run", *args)  # neither EXPERIMENT nor --from: a usage error
    assert result.exit_code == 2 and "Missing argument 'EXPERIMENT'" in result.stderr
    assert len(runs_of(store)[1]) == 1


def test_sweep_from_a_run_sweeps_around_its_config(invoke, store):
    args = ["--device", "cpu", "--tracking-uri", store, "-q"]
    assert invoke("run", "linear", "--epochs", "2", "--set", "dataset.noise=0.25", *args).exit_code == 0
    original = only_run_id(store)
    result = invoke("sweep", "--from", original, "--set", "optimizer.lr=0.01,0.02", *args)
    assert result.exit_code == 0, result.stderr
    _, runs = runs_of(store)
    new = [r for r in runs if r.info.run_id != original]
    assert len(new) == 3  # the parent and two points
    assert {r.data.tags[T.STARTED_FROM] for r in new} == {original}
    points = [r for r in new if T.PARENT in r.data.tags]
    assert sorted(r.data.params["optimizer.lr"] for r in points) == ["0.01", "0.02"]
    assert {(r.data.params["train.epochs"], r.data.params["dataset.noise"]) for r in points} == {("2", "0.25")}


# --- every registered experiment, and what the environment table reports -----------------------

from idx import write_idx  # noqa: E402 - the tests folder's helper: small real IDX files
from regfw.plugins import load_plugins  # noqa: E402

REGISTRY = load_plugins().registry


def buildable(experiment: str, folder) -> list[str]:
    """--set arguments that let ``experiment`` train here: tiny IDX files for MNIST-format datasets
    (no download), a small CSV for a file-backed one."""
    params = REGISTRY.get("dataset", REGISTRY.get("experiment", experiment).parts["dataset"].name).params
    if "path" in params:
        path = folder / "table.csv"
        path.write_text("a,b,y\n" + "".join(f"{i % 7},{i * 0.5},{i % 3}\n" for i in range(48)))
        return ["--set", f"dataset.path={path}", "--set", "dataset.target=y"]
    if "root" not in params:
        return []
    root = write_idx(folder / "idx", layout="MNIST", n_train=64, n_test=32)
    write_idx(root, layout="FashionMNIST", n_train=64, n_test=32)
    sets = ["--set", f"dataset.root={root}"]
    return sets + (["--set", "dataset.download=false"] if "download" in params else [])


# Experiments whose recipe's data takes seconds to train on: a smaller draw of the same generator.
SMALLER = {"sequence": ["--set", "dataset.n_train=200", "--set", "dataset.n_test=100"]}


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One SQLite store for the parametrized test below: each experiment has its own MLflow experiment."""
    return f"sqlite:///{tmp_path_factory.mktemp('rerun-store') / 'mlflow.db'}"


@pytest.mark.slow
@pytest.mark.parametrize("experiment", REGISTRY.names("experiment"))
def test_every_registered_experiment_reruns_identical_on_cpu(experiment, invoke, shared_store, tmp_path):
    store = shared_store
    args = ["--epochs", "2", "--log-every", "1", "--device", "cpu", "--tracking-uri", store, "-q"]
    done = invoke("run", experiment, *buildable(experiment, tmp_path), *SMALLER.get(experiment, []), *args)
    assert done.exit_code == 0, done.stderr
    original = only_run_id(store, experiment)
    result = invoke("rerun", original, "--verify", "--tracking-uri", store)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "environment as recorded" in result.stdout
    verdict = result.stdout.strip().splitlines()[-1]
    assert verdict.startswith("identical: ") and "(not compared" not in verdict, verdict
    assert int(verdict.split()[1]) > 2  # two curve points at least, and the parameters


ACME = """
from regfw import Param, hookimpl


def make_points(generator, n_samples):
    import torch
    from regfw.data import Data

    x = torch.linspace(-1, 1, n_samples).unsqueeze(1)
    return Data(x, {formula} + 0.1 * torch.rand(x.shape, generator=generator))


@hookimpl
def register_datasets(register):
    register("acme-points", make_points, params={{"n_samples": Param(40, min=2)}},
             dims=lambda p: {{"in_features": 1, "out_features": 1, "task": "regression"}})


@hookimpl
def register_experiments(register):
    register("acme", dataset="acme-points", model="linear", loss="mse", optimizer=("sgd", {{"lr": 0.1}}),
             train={{"epochs": 3, "batch_size": "full"}})
"""


def table_row(stdout: str, name: str) -> str:
    """The environment table's row for ``name`` (the text after the name)."""
    rows = [line.strip()[len(name):].strip() for line in stdout.splitlines() if line.strip().startswith(name + "  ")]
    assert len(rows) == 1, stdout
    return rows[0]


def test_a_changed_plugin_version_and_generator_are_reported(invoke, store, fake_dist):
    import shutil

    site = fake_dist("acme", {"acme_plugin": ACME.format(formula="2 * x")}, {"acme": "acme_plugin"}, version="0.1")
    args = ["--device", "cpu", "--tracking-uri", store, "-q"]
    assert invoke("run", "acme", *args).exit_code == 0
    original = only_run_id(store, "acme")
    shutil.rmtree(site / "acme-0.1.dist-info")  # upgraded: version 0.2 draws other points from the same params
    fake_dist("acme", {"acme_plugin": ACME.format(formula="2.5 * x + 1")}, {"acme": "acme_plugin"}, version="0.2")
    result = invoke("rerun", original, "--verify", "--tracking-uri", store)
    assert result.exit_code == 4, result.stdout + result.stderr
    for part in ("experiment", "dataset"):
        assert table_row(result.stdout, f"{part} plugin").split() == ["acme", "(acme", "0.1)", "acme", "(acme", "0.2)"]
    recorded, now = table_row(result.stdout, "data fingerprint").split()
    assert len(recorded) == len(now) == 12 and recorded != now  # the config is the same, the tensors are not
    assert "model plugin" not in result.stdout  # regfw's own torch components did not change
    causes = next(line for line in result.stdout.splitlines() if "may come from" in line)
    assert "experiment plugin" in causes and "data fingerprint" in causes


def test_a_changed_data_file_and_a_changed_generator_parameter_are_reported(invoke, store, tmp_path):
    root = write_idx(tmp_path / "idx", layout="MNIST", n_train=64, n_test=32, seed=0)
    args = ["--epochs", "1", "--device", "cpu", "--tracking-uri", store, "-q"]
    assert invoke("run", "mnist", "--set", f"dataset.root={root}", "--set", "dataset.download=false",
                  *args).exit_code == 0
    original = only_run_id(store, "mnist")
    write_idx(root, layout="MNIST", n_train=64, n_test=32, seed=1)  # the same file names, other images
    result = invoke("rerun", original, "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    recorded, now = table_row(result.stdout, "data fingerprint").split()
    assert recorded != now
    assert "dataset.root" not in result.stdout  # the configuration is the one recorded

    assert invoke("run", "linear", *args).exit_code == 0
    original = only_run_id(store)
    result = invoke("rerun", original, "--set", "dataset.noise=0.5", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert table_row(result.stdout, "dataset.noise").split() == ["1.0", "0.5"]
    recorded, now = table_row(result.stdout, "data fingerprint").split()
    assert recorded != now


def test_a_run_recorded_before_the_provenance_tags_reruns_and_names_what_it_lacks(invoke, store):
    assert invoke("run", "linear", "--epochs", "3", "--device", "cpu", "--tracking-uri", store, "-q").exit_code == 0
    original = only_run_id(store)
    client = MlflowClient(store)
    for tag in (T.GIT_DIRTY, T.THREADS, T.PYTHON_VERSION, T.MLFLOW_VERSION, T.DATA_FINGERPRINT):
        client.delete_tag(original, tag)  # what a run written before these tags existed holds
    result = invoke("rerun", original, "--verify", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert "not recorded by the run, not compared: Python, MLflow, git tree dirty, threads, data fingerprint" \
        in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("identical: ")


# --- every kind of run regfw writes ------------------------------------------------------------

def sweep_runs(store: str, experiment: str = "linear"):
    """(parents, points) in the order they started."""
    _, runs = runs_of(store, experiment)
    return ([r for r in runs if r.data.tags.get(T.ROLE) == T.ROLE_SWEEP],
            [r for r in runs if T.PARENT in r.data.tags])


def verdict_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(("identical: ", "within ", "differs: ")))


def test_a_sweep_point_reruns_alone_and_a_vectorized_one_within_the_stated_tolerance(invoke, store):
    args = ["--set", "optimizer.lr=0.01,0.02", "--epochs", "3", "--log-every", "1", "--device", "cpu",
            "--tracking-uri", store, "-q"]
    assert invoke("sweep", "linear", *args).exit_code == 0
    assert invoke("sweep", "linear", *args, "--vectorize").exit_code == 0
    _, points = sweep_runs(store)
    sequential, stacked = points[0], next(p for p in points if T.BUCKET in p.data.tags)
    result = invoke("rerun", sequential.info.run_id, "--verify", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert verdict_line(result.stdout).startswith("identical: ") and "vectorized" not in result.stdout
    result = invoke("rerun", stacked.info.run_id, "--verify", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert "this rerun trained alone: compared within the vectorized path's stated relative tolerance 1e-05 " \
           "(docs/comparing.md, 'Same results')" in result.stdout
    assert verdict_line(result.stdout).startswith("within 1e-05: ")
    _, runs = runs_of(store)
    reruns = [r for r in runs if T.RERUN_OF in r.data.tags]
    assert [r.data.tags[T.RERUN_OF] for r in reruns] == [sequential.info.run_id, stacked.info.run_id]
    assert all(T.PARENT not in r.data.tags and T.BUCKET not in r.data.tags for r in reruns)  # each alone
    assert "within 1e-05" in MlflowClient(store).get_run(stacked.info.run_id).data.tags[T.VERDICT]


def test_rerun_of_a_sweeps_parent_reruns_every_point_and_gives_each_verdict(invoke, store):
    args = ["--epochs", "3", "--log-every", "1", "--device", "cpu", "--tracking-uri", store]
    assert invoke("sweep", "linear", "--set", "optimizer.lr=0.01,0.02", "--seeds", "0,1", *args, "-q").exit_code == 0
    (parent,), originals = sweep_runs(store)
    result = invoke("rerun", parent.info.run_id[:8], "--verify", *args[-2:])
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"rerun of sweep {parent.data.tags[T.SWEEP_ID]} (run {parent.info.run_id}, 4 points, FINISHED)" in lines[0]
    verdicts = [line for line in lines if ": identical: " in line]
    assert [v.split(":")[0] for v in verdicts] == [f"[{i}/4] {p.info.run_name}" for i, p in
                                                   enumerate(sorted(originals, key=lambda r: int(r.data.tags[T.SWEEP_INDEX])), 1)]
    assert lines[-1].startswith("sweep: 4 of 4 points reproduced, 0 differ")
    parents, points = sweep_runs(store)
    old_parent, new_parent = parents
    assert new_parent.data.tags[T.RERUN_OF] == parent.info.run_id
    assert old_parent.data.tags[T.VERDICT] == new_parent.data.tags[T.VERDICT] == "identical"
    assert old_parent.data.tags[T.VERIFIED_BY] == new_parent.info.run_id
    again = [p for p in points if p.data.tags[T.PARENT] == new_parent.info.run_id]
    by_id = {p.info.run_id: p for p in originals}
    assert len(again) == 4 and {p.data.tags[T.RERUN_OF] for p in again} == set(by_id)
    for point in again:  # each new point repeats the original point of the same configuration
        assert point.data.params == by_id[point.data.tags[T.RERUN_OF]].data.params
        assert point.data.tags[T.VERDICT] == "identical"

    # --vectorize applies: the points now train stacked, compared within the stated tolerance
    result = invoke("rerun", parent.info.run_id, "--verify", "--vectorize", *args[-2:])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "points 1,2,3,4 trained alone in the original, stacked (bucket 1, 4 points) now: compared within the " \
           "vectorized path's stated relative tolerance 1e-05" in result.stdout
    assert result.stdout.count(": within 1e-05: ") == 4
    # a changed learning rate: every point differs, exit 4, each says why
    result = invoke("rerun", parent.info.run_id, "--verify", "--set", "optimizer.lr=0.05", "-q", *args[-2:])
    assert result.exit_code == 4
    assert result.stdout.count(": differs: ") == 4
    assert result.stdout.count("the configuration differs from the original's: optimizer.lr") == 4
    assert result.stdout.strip().splitlines()[-1] == "sweep: 0 of 4 points reproduced, 4 differ"


def test_a_table_run_reruns_from_its_file_or_one_with_the_same_sha256(invoke, store, tmp_path):
    table = tmp_path / "table.csv"
    table.write_text("a,b,y\n" + "".join(f"{i % 7},{i * 0.5},{i % 3}\n" for i in range(48)))
    args = ["--tracking-uri", store]
    assert invoke("run", "classification", "--set", f"dataset.path={table}", "--set", "dataset.target=y",
                  "--epochs", "2", "--device", "cpu", *args, "-q").exit_code == 0
    original = only_run_id(store, "classification")
    result = invoke("rerun", original, "--verify", *args)
    assert result.exit_code == 0, result.stderr
    assert verdict_line(result.stdout).startswith("identical: ")
    moved = tmp_path / "moved.csv"
    table.rename(moved)
    result = invoke("rerun", original, "--verify", *args)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert f"give the file it trained on (sha256 {runs_of(store, 'classification')[1][0].data.tags['regfw.data.sha256'][:12]})" \
           " with --set dataset.path=FILE" in result.stderr
    result = invoke("rerun", original, "--verify", "--set", f"dataset.path={moved}", *args)
    assert result.exit_code == 0, result.stderr
    assert verdict_line(result.stdout).startswith("identical: ")
    assert table_row(result.stdout, "dataset.path").split() == [str(table), str(moved)]  # the one value changed
    moved.write_text(moved.read_text() + "1,2.5,1\n")  # another file at that path
    result = invoke("rerun", original, "--verify", "--set", f"dataset.path={moved}", *args)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "not the same data" in result.stderr
    assert len(runs_of(store, "classification")[1]) == 3  # the original and two reruns: no run for a refusal


def test_a_resumed_run_is_compared_over_its_whole_history(invoke, store, tmp_path):
    from pathlib import Path

    import torch

    args = ["run", "linear", "--batch-size", "10", "--epochs", "30", "--log-every", "1", "--checkpoint-every", "10",
            "--device", "cpu", "--tracking-uri", store, "-q"]
    assert invoke(*args).exit_code == 0
    client, (run,) = runs_of(store)
    folder = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoint"
    newest = max(folder.glob("*.pt"), key=lambda p: torch.load(p, weights_only=True)["epoch"])
    newest.unlink()  # as if the process had died before its last checkpoint: resume starts at epoch 21
    client.set_terminated(run.info.run_id, "KILLED")
    assert invoke("resume", run.info.run_id, "--tracking-uri", store, "-q").exit_code == 0
    assert client.get_run(run.info.run_id).data.tags[T.RESUMED_FROM] == "20"
    result = invoke("rerun", run.info.run_id, "--verify", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert "resumed from its checkpoint at epoch 20; this rerun trained straight through: compared over the " \
           "whole history" in result.stdout
    verdict = verdict_line(result.stdout)
    assert verdict.startswith("identical: ") and int(verdict.split()[1]) >= 30  # every epoch of train_loss


@pytest.mark.slow
def test_a_two_process_run_reruns_on_two_processes(regfw_script, store):
    """Real torchrun twice (a few seconds of imports per process): the same world size, the same
    shards and sums, so the rerun is bit for bit."""
    data = ["--set", "dataset.n_per_class=60", "--set", "dataset.n_train_per_class=40", "--batch-size", "17"]
    done = regfw_script("run", "binary", *data, "--epochs", "2", "--nproc", "2", "--device", "cpu",
                        "--tracking-uri", store, "-q")
    assert done.returncode == 0, done.stderr
    original = only_run_id(store, "binary")
    done = regfw_script("rerun", original, "--verify", "--tracking-uri", store)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(f"rerun of run {original}") == 1  # rank 1 prints nothing
    assert "on 2 processes as the original" in done.stdout
    assert verdict_line(done.stdout).startswith("identical: ")
    _, (_, again) = runs_of(store, "binary")
    assert again.data.tags[T.WORLD_SIZE] == "2" and again.data.tags[T.RERUN_OF] == original


@pytest.mark.slow
def test_a_sweep_reruns_in_worker_processes_with_jobs(invoke, store):
    args = ["--epochs", "2", "--log-every", "1", "--device", "cpu", "--tracking-uri", store, "-q"]
    assert invoke("sweep", "linear", "--set", "optimizer.lr=0.01,0.02", *args).exit_code == 0
    (parent,), _ = sweep_runs(store)
    result = invoke("rerun", parent.info.run_id, "--verify", "--jobs", "2", "--tracking-uri", store, "-q")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.count(": identical: ") == 2
    assert result.stdout.strip().splitlines()[-1] == "sweep: 2 of 2 points reproduced, 0 differ"
    assert len(sweep_runs(store)[1]) == 4  # two points, rerun once each


# --- docs/reproducing.md ------------------------------------------------------------------------

def test_readme_tour_shows_rerun_after_resume():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    at = lines.index("regfw resume RUN_ID")
    assert lines[at + 1].startswith("regfw rerun RUN_ID --verify ") and "docs/reproducing.md" in lines[at + 1]


@pytest.mark.slow
def test_the_sessions_docs_reproducing_quotes_are_what_the_commands_print():
    """docs/tools/reproducing.py runs the commands again; the page must hold what they print. Run
    ids and times differ from run to run, and the figures may in their last digits on another CPU:
    those are masked, every word, row and count is compared."""
    import importlib.util
    import re
    from pathlib import Path

    tool = Path(__file__).resolve().parent.parent / "docs" / "tools" / "reproducing.py"
    spec = importlib.util.spec_from_file_location("reproducing_tool", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = module.DOC.read_text(encoding="utf-8")
    fresh = module.blocks()

    def masked(text: str) -> str:
        text = re.sub(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{8}\b", "ID", text)
        return re.sub(r"-?\d+\.\d+(e[-+]?\d+)?", "X", text)

    assert masked(module.replace(page, fresh)) == masked(page)
    assert "identical: " in fresh["identical"] and "differs: train_loss at step 2: " in fresh["differs"]
    assert fresh["differs"].rstrip("`\n").endswith("$ echo $?\n4")


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # with test_ray.py's clusters: one Ray at a time on a test worker
def test_a_sweep_reruns_its_points_as_ray_tasks_with_backend_ray(regfw_script, store):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'regfw[ray]')")
    args = ["--epochs", "3", "--log-every", "1", "--device", "cpu", "--tracking-uri", store, "-q"]
    done = regfw_script("sweep", "linear", "--set", "optimizer.lr=0.01,0.02", *args, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    (parent,), _ = sweep_runs(store)
    done = regfw_script("rerun", parent.info.run_id, "--verify", "--backend", "ray", "--tracking-uri", store,
                        env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "a local Ray instance" in done.stdout
    assert done.stdout.count(": identical: ") == 2, done.stdout
    _, points = sweep_runs(store)
    assert all(p.data.tags.get(T.RAY_NODE) for p in points[2:])  # trained as Ray tasks


def test_sweep_options_on_a_single_run_are_one_line_and_no_run(invoke, store):
    assert invoke("run", "linear", "--epochs", "1", "--device", "cpu", "--tracking-uri", store, "-q").exit_code == 0
    original = only_run_id(store)
    for extra in (["--jobs", "2"], ["--vectorize"], ["--backend", "ray"], ["--ray-address", "127.0.0.1:1"]):
        result = invoke("rerun", original, *extra, "--tracking-uri", store)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, extra
        assert "go with a sweep's parent run; this run is one run" in result.stderr
    assert len(runs_of(store)[1]) == 1
