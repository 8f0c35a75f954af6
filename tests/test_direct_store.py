"""store.direct writes runs that MLflow's own API cannot tell from runs MLflow wrote.

Two trackers write the same run into one real SQLite store: one through ``MlflowClient`` (its
direct store switched off), one straight into the tables. Every view MLflow offers of a run
(info, params, tags, metrics, dataset inputs, artifacts, search by each) must agree. Where the
direct path must not be used (an older schema, a name MLflow refuses, a missing experiment),
the result is MLflow's own.
"""

from __future__ import annotations

import sqlite3
import subprocess

import pytest

from regfw.store import open_client
from regfw.store.direct import DirectStore, migration_heads
from regfw.store.tracker import MlflowTracker
from regfw.store.uri import sqlite_path

from conftest import REGFW, regfw_importing

PARAMS = {"train.lr": 0.05, "model.hidden": [8, 4], "seed": 0, "empty": [], "none": None}
TAGS = {"regfw.experiment": "linear", "mlflow.user": "someone", "regfw.seed": 0}
SOURCE = {"name": "linear-1d", "digest": "0123456789abcdef0123456789abcdef0123456789", "source_type": "generated",
          "source": "regfw://linear", "schema": {"x": [70, 1]}, "profile": {"rows": 70}}


def _tracker(store: str, direct: bool = True) -> MlflowTracker:
    """An open tracker on the "direct" experiment; ``direct=False``: everything through MLflow."""
    tracker = MlflowTracker(store, "direct").open()
    if not direct:
        tracker.mlflow()
        tracker.direct = None
    return tracker


def _write(tracker: MlflowTracker, tmp_path) -> str:
    tracker.start("linear lr=0.05", PARAMS, TAGS)
    tracker.log_input(SOURCE)
    tracker.log_input(SOURCE)  # a second time: one input, as MLflow keeps it
    tracker.log_metrics([("train_loss", 1.0 / s, s) for s in range(1, 1501)] + [("final_train_loss", 0.25, 0)])
    tracker.set_tags({"regfw.epochs_done": 1500, "regfw.failure": "x" * 4000})
    tracker.set_tags({"regfw.epochs_done": 1501, "mlflow.runName": "renamed"})
    folder = tmp_path / f"files-{tracker.run_id}"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.yaml").write_text("seed: 0\n")
    (folder / "sub" / "fit.svg").write_text("<svg/>")
    tracker.log_artifacts(folder)
    tracker.log_artifact(folder / "config.yaml", "checkpoints")
    tracker.end("FINISHED")
    return tracker.run_id


def _view(client, run_id):
    """What MLflow shows of a run, without what differs by nature (ids, times)."""
    run = client.get_run(run_id)
    info = run.info
    assert info.artifact_uri.endswith(f"/{run_id}/artifacts")
    assert info.start_time and info.end_time and info.end_time >= info.start_time
    inputs = [(d.dataset.name, d.dataset.digest, d.dataset.source_type, d.dataset.source, d.dataset.schema,
               d.dataset.profile, sorted((t.key, t.value) for t in d.tags)) for d in run.inputs.dataset_inputs]
    artifacts = sorted(a.path for a in client.list_artifacts(run_id)) + \
        sorted(a.path for a in client.list_artifacts(run_id, "sub")) + \
        sorted(a.path for a in client.list_artifacts(run_id, "checkpoints"))
    history = [(m.step, m.value) for m in client.get_metric_history(run_id, "curves/train_loss")]
    return {"status": info.status, "lifecycle": info.lifecycle_stage, "user": info.user_id, "name": info.run_name,
            "experiment": info.experiment_id, "artifact_root": info.artifact_uri.rsplit("/", 2)[0],
            "params": run.data.params, "tags": run.data.tags, "metrics": run.data.metrics, "inputs": inputs,
            "artifacts": artifacts, "history": sorted(history)}


def test_a_run_written_directly_reads_back_as_one_written_by_mlflow(store, tmp_path):
    by_mlflow = _write(_tracker(store, direct=False), tmp_path)
    direct = _tracker(store)
    assert direct.direct is not None and direct.client is None
    by_direct = _write(direct, tmp_path)

    client = open_client(store)
    a, b = _view(client, by_mlflow), _view(client, by_direct)
    assert a == b
    assert b["name"] == "renamed" and b["params"]["model.hidden"] == "8,4" and len(b["history"]) == 1500
    assert b["inputs"] and b["artifacts"] == ["checkpoints", "config.yaml", "sub", "sub/fit.svg",
                                                "checkpoints/config.yaml"]
    for query in ("params.`train.lr` = '0.05'", "tags.`regfw.epochs_done` = '1501'", "attributes.run_name = 'renamed'",
                  "metrics.`curves/train_loss` < 0.001", "attributes.status = 'FINISHED'", "dataset.name = 'linear-1d'"):
        found = {r.info.run_id for r in client.search_runs([a["experiment"]], query)}
        assert found == {by_mlflow, by_direct}, query
    with sqlite3.connect(sqlite_path(store)) as db:  # both runs share the experiment's one dataset row
        assert db.execute("SELECT COUNT(*) FROM datasets").fetchone()[0] == 1


def test_the_store_is_written_directly_only_at_the_installed_mlflows_schema(store):
    MlflowTracker(store, "direct").open()  # MLflow creates the store and the experiment
    with sqlite3.connect(sqlite_path(store)) as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert migration_heads() == {version}  # the head read from MLflow's files is what MLflow stamps
    assert DirectStore.open(store, "direct") is not None
    assert DirectStore.open(store, "no such experiment") is None
    with sqlite3.connect(sqlite_path(store)) as db:
        db.execute("UPDATE alembic_version SET version_num = 'a8c4a736bde6'")  # an older MLflow's store
    assert DirectStore.open(store, "direct") is None


def test_an_older_store_is_refused_in_mlflows_words_not_written(store, tmp_path, invoke):
    MlflowTracker(store, "linear").open()
    with sqlite3.connect(sqlite_path(store)) as db:
        db.execute("UPDATE alembic_version SET version_num = 'a8c4a736bde6'")
    result = subprocess.run([REGFW, "run", "linear", "--epochs", "1", "-q", "--tracking-uri", store],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "out-of-date database schema" in lines[0], result.stderr
    with sqlite3.connect(sqlite_path(store)) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


@pytest.mark.parametrize("params, tags", [
    ({"bad?name": 1}, {}),  # a name MLflow refuses
    ({"long": "v" * 7000}, {}),  # a value MLflow truncates or refuses
    ({}, {"bad?tag": "x"}),
])
def test_what_mlflow_would_refuse_or_change_goes_through_mlflow(store, params, tags):
    """The same call through the direct path and through MLflow alone ends the same way."""
    outcomes = []
    for direct in (True, False):
        tracker = _tracker(store, direct)
        try:
            tracker.start("r", params, tags)
            tracker.end("FINISHED")
            run = open_client(store).get_run(tracker.run_id)
            outcomes.append(("ok", run.data.params, {k: v for k, v in run.data.tags.items() if k in tags}))
        except Exception as exc:  # noqa: BLE001 - the error's text is what is compared
            outcomes.append(("error", str(exc).replace(tracker.run_id or "", "RUN")))
    assert outcomes[0] == outcomes[1]


@pytest.mark.slow
def test_a_run_on_an_existing_store_does_not_import_mlflow(tmp_path, store):
    """A real process: importing MLflow and its SQL store cost more CPU than importing torch."""
    command = ["run", "linear", "--epochs", "2", "--tracking-uri", store, "-q"]
    first, loaded = regfw_importing("mlflow", command, tmp_path)
    assert first.returncode == 0 and loaded, first.stderr  # it created the store
    second, loaded = regfw_importing("mlflow", command, tmp_path)
    assert second.returncode == 0 and not loaded, second.stderr
    # The setting: `regfw --no-direct-store` sends every write of the same run through MLflow's client
    third, loaded = regfw_importing("mlflow", ["--no-direct-store", *command], tmp_path)
    assert third.returncode == 0 and loaded, third.stderr
    runs = open_client(store).search_runs([open_client(store).get_experiment_by_name("linear").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"] * 3
    assert {r.data.params["train.epochs"] for r in runs} == {"2"}


def test_a_dataset_input_mlflow_would_refuse_goes_through_mlflow(store):
    """A dataset name over MLflow's 500 characters: refused the same way on both paths."""
    outcomes = []
    for direct in (True, False):
        tracker = _tracker(store, direct)
        tracker.start("r", {}, {})
        try:
            tracker.log_input(SOURCE | {"name": "d" * 600})
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - the error's text is what is compared
            outcomes.append(str(exc).replace(tracker.run_id, "RUN"))
        tracker.end("FINISHED")
    assert outcomes[0] == outcomes[1] and outcomes[0] != "ok"
