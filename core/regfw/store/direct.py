"""A run written into an existing MLflow SQLite store with the standard library's ``sqlite3``.

Why: to write one run through MLflow, a process imports ``mlflow`` and its SQL store (SQLAlchemy,
alembic, the model registry's tables): about 2 CPU seconds here, as much as importing torch, and
more than a small run's training. A sweep point then pays ~25-40 ms of ORM work per run record.
Here the same rows go into the same tables with a handful of statements and no MLflow import: a
run's record costs about a millisecond and ``regfw run`` imports MLflow only where it needs it
(creating a store or an experiment, resuming a run, reading runs back).

Used only where it is certain to write what MLflow would:

- ``REGFW_DIRECT_STORE`` is not ``0`` (``0``, or ``regfw --no-direct-store``: every write goes
  through ``MlflowClient``);
- a SQLite store that exists and whose schema is the one the installed MLflow creates: its
  ``alembic_version`` is the head of the migrations shipped with that MLflow (read from the
  package's files, without importing it), and every table this module writes has the columns it
  writes and no other column that must be filled (:func:`schema_mismatch`, read from the store's
  own table definitions); any other store goes through MLflow (an older or newer one is refused
  before MLflow is opened on it: :mod:`regfw.store.schema`);
- an experiment that exists, is active, was made by regfw and keeps its artifacts in a local
  folder; MLflow's workspaces off (``MLFLOW_ENABLE_WORKSPACES``/``MLFLOW_WORKSPACE`` unset);
- params and tags that pass MLflow's own name and length rules (:func:`acceptable`), dataset
  inputs within its column sizes (:func:`dataset_fits`); anything else is logged through MLflow,
  which accepts, truncates or refuses it in its own words.

MLflow refuses to write into a run that is not active, or into an experiment that is not; so does
this module, with MLflow's own words (:class:`RunGone`), and the check is made inside the
transaction of each write: a run deleted (``mlflow runs delete``, the UI) or garbage-collected
(``mlflow gc``) while regfw writes it gets nothing more, not even orphan rows. SQLite's foreign
keys are off on these connections as on every connection that does not ask, so that check is
what stands for them.

A local run's artifacts are copied into its folder as MLflow's local artifact repository copies
them (:func:`copy_folder_into`, :func:`copy_file_into`).

What is written follows MLflow's ``SqlAlchemyStore`` (``create_run``, ``log_batch``'s params and
tags, ``log_inputs``, ``update_run_info``) and ``MlflowClient.create_run`` (user from the
``mlflow.user`` tag, ``mlflow.runName`` tag added). tests/test_direct_store.py writes runs both ways
into one store and requires every view of MLflow's API to agree, so a new MLflow that changes any
of this fails there first.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import sqlite3
import time
import uuid
from pathlib import Path

from regfw.errors import RegfwError

RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
MAX_KEY = 250  # MLflow's MAX_ENTITY_KEY_LENGTH
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_RUN_NAME = 250  # the runs.name column
NAME_CHARACTERS = re.compile(r"^[/\w.\- :]*$")  # MLflow's rule for param, metric and tag names (POSIX)
DEFAULT_WORKSPACE = "default"
ENV_SWITCH = "REGFW_DIRECT_STORE"  # "0": every write through MLflow's own client

# What this module writes, table by table: a store whose tables lack one of these columns, or
# have another that must be filled, is written through MLflow (see schema_mismatch).
WRITTEN_COLUMNS = {
    "runs": ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status", "start_time",
             "end_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id", "deleted_time"),
    "tags": ("key", "value", "run_uuid"),
    "params": ("key", "value", "run_uuid"),
    "metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
    "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
    "datasets": ("dataset_uuid", "experiment_id", "name", "digest", "dataset_source_type", "dataset_source",
                 "dataset_schema", "dataset_profile"),
    "inputs": ("input_uuid", "source_type", "source_id", "destination_type", "destination_id"),
    "input_tags": ("input_uuid", "name", "value"),
}
READ_COLUMNS = {"experiments": ("experiment_id", "name", "lifecycle_stage", "artifact_location", "workspace"),
                "experiment_tags": ("key", "value", "experiment_id")}


class RunGone(RegfwError):
    """The run (or its experiment) is no longer active in the store: deleted or garbage-collected
    by someone else while regfw wrote it. Nothing more is written to it."""


def enabled() -> bool:
    """Whether the direct path may be used at all (``REGFW_DIRECT_STORE=0`` forces MLflow's own)."""
    return os.environ.get(ENV_SWITCH, "1").strip() != "0"


def schema_mismatch(connection: sqlite3.Connection) -> str | None:
    """Why the store's tables differ from what this module writes (a renamed or added column), or
    None when every statement here fits them. Read from the store's own table definitions."""
    for table, columns in (WRITTEN_COLUMNS | READ_COLUMNS).items():
        found = {row[1]: row for row in connection.execute(f"PRAGMA table_info({table})")}
        if not found:
            return f"table {table} is missing"
        missing = [c for c in columns if c not in found]
        if missing:
            return f"table {table} has no column {missing[0]}"
        if table in WRITTEN_COLUMNS:
            # cid, name, type, notnull, dflt_value, pk: a column that must be given and is not written here
            required = [name for name, row in found.items()
                        if row[3] and row[4] is None and not row[5] and name not in columns]
            if required:
                return f"table {table} has a column {required[0]} that must be filled"
    return None


_said: set[str] = set()


def say_once(text: str) -> None:
    """A note on stderr, once per process, where the user asked to see them (``regfw -v``, which
    sets ``REGFW_VERBOSE=1``, or ``REGFW_DEBUG=1``)."""
    if text in _said or "1" not in (os.environ.get("REGFW_VERBOSE"), os.environ.get("REGFW_DEBUG")):
        return
    import sys

    _said.add(text)
    print(f"regfw: note: {text}", file=sys.stderr)


def now_ms() -> int:
    return int(time.time() * 1000)


def _name_ok(name) -> bool:
    """MLflow's ``_validate_param_name``/``_validate_tag_name``: its characters, and a name that
    does not resolve to another when read as a path."""
    if not isinstance(name, str) or not name or len(name) > MAX_KEY or not NAME_CHARACTERS.match(name):
        return False
    norm = posixpath.normpath(name)
    return norm == name and norm != "." and not norm.startswith("..") and not norm.startswith("/")


def acceptable(params: dict[str, str], tags: dict[str, str]) -> bool:
    """Whether MLflow would take these params and tags as they are (no truncation, no refusal)."""
    return (all(_name_ok(k) and len(v) <= MAX_PARAM_VALUE for k, v in params.items())
            and all(_name_ok(k) and len(v) <= MAX_TAG_VALUE for k, v in tags.items())
            and len(tags.get(RUN_NAME_TAG, "")) <= MAX_RUN_NAME)


def refused_metric_name(key: str) -> str | None:
    """MLflow's refusal of metric name ``key`` (``_validate_metric``), on one line, or None where
    MLflow takes it. Names that pass regfw's own copy of the rule never import MLflow."""
    if _name_ok(key):
        return None
    from mlflow.utils.validation import _validate_metric

    try:
        _validate_metric(key, 0.0, 0, 0)
    except Exception as exc:  # noqa: BLE001 - MlflowException: its message is the answer
        return "metric " + repr(key) + ": " + " ".join(str(getattr(exc, "message", exc)).split())
    return None


MAX_DATASET = {"name": 500, "digest": 36, "source_type": 36, "source": 65535, "schema": 1048575, "profile": 16777215}
MAX_INPUT_TAG = (255, 500)  # input_tags' name and value columns


def dataset_fits(dataset: dict, input_tags: dict[str, str]) -> bool:
    """Whether MLflow's ``log_inputs`` would take this dataset input as it is."""
    return (all(dataset[k] is None or len(dataset[k]) <= limit for k, limit in MAX_DATASET.items())
            and all(len(k) <= MAX_INPUT_TAG[0] and len(v) <= MAX_INPUT_TAG[1] for k, v in input_tags.items()))


def migration_heads() -> frozenset[str]:
    """The head revision(s) of the installed MLflow's schema (what it stamps a new store with)."""
    from regfw.store.schema import migration_revisions

    return migration_revisions()[1]


class DirectStore:
    """One open SQLite connection and the experiment its runs are filed under."""

    def __init__(self, path: Path, connection: sqlite3.Connection, experiment_id: str, artifact_location: str):
        self.path = path
        self.connection = connection
        self.experiment_id = experiment_id
        self.artifact_location = artifact_location.rstrip("/")

    @classmethod
    def open(cls, uri: str, experiment_name: str) -> "DirectStore | None":
        """The store opened for direct writes, or None where MLflow must do them (see the module)."""
        from regfw.store import tags as T
        from regfw.store.uri import sqlite_path

        path = sqlite_path(uri)
        if not enabled() or path is None or not path.is_file() or os.environ.get("MLFLOW_WORKSPACE") or \
                os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in ("true", "1"):
            return None
        try:
            connection = sqlite3.connect(path, timeout=20.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return None
        try:
            connection.execute("PRAGMA synchronous=NORMAL")  # this connection only: the journal mode is the store's
            heads = migration_heads()
            version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
            if len(heads) != 1 or [row[0] for row in version] != list(heads):
                raise LookupError("schema")
            mismatch = schema_mismatch(connection)
            if mismatch is not None:
                say_once(f"{uri}: {mismatch}; runs are written through MLflow's own client in this process")
                raise LookupError("columns")
            found = connection.execute(
                "SELECT experiment_id, lifecycle_stage, artifact_location FROM experiments "
                "WHERE name = ? AND workspace = ?", (experiment_name, DEFAULT_WORKSPACE)).fetchone()
            if found is None or found[1] != "active" or not str(found[2] or "").startswith("file:///"):
                raise LookupError("experiment")
            kind = connection.execute("SELECT value FROM experiment_tags WHERE experiment_id = ? AND key = ?",
                                      (found[0], T.EXPERIMENT_KIND)).fetchone()
            if kind is None:
                raise LookupError("experiment kind")
        except (sqlite3.Error, LookupError):
            connection.close()
            return None
        return cls(path, connection, str(found[0]), found[2])

    @contextlib.contextmanager
    def transaction(self, run_id: str | None = None):
        """One write transaction (taken at once: a writer waits for another's to end, up to the
        connection's timeout, rather than failing half-way). With ``run_id``: first, inside it,
        the check MLflow makes before every write to a run (:func:`check_run_active`)."""
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            if run_id is not None:
                check_run_active(self.connection, run_id)
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def create_run(self, run_name: str, tags: dict[str, str], params: dict[str, str],
                   start_ms: int | None = None) -> tuple[str, str]:
        """A RUNNING run with its tags and params, as ``MlflowClient.create_run`` then
        ``log_batch(params=...)`` make it; returns its id and artifact URI."""
        run_id = uuid.uuid4().hex
        artifact_uri = f"{self.artifact_location}/{run_id}/artifacts"
        tags = dict(tags)
        run_name = run_name or tags.get(RUN_NAME_TAG) or run_id
        tags.setdefault(RUN_NAME_TAG, run_name)
        with self.transaction() as db:
            check_experiment_active(db, self.experiment_id)
            db.execute("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
                       "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time) "
                       "VALUES (?, ?, 'UNKNOWN', '', '', ?, 'RUNNING', ?, NULL, '', 'active', ?, ?, NULL)",
                       (run_id, run_name, tags.get(USER_TAG, "unknown"), start_ms or now_ms(), artifact_uri, int(self.experiment_id)))
            db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                           [(k, v, run_id) for k, v in tags.items()])
            db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                           [(k, v, run_id) for k, v in params.items()])
        return run_id, artifact_uri

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Tags set or replaced; a new ``mlflow.runName`` renames the run, as MLflow's ``set_tag`` does."""
        with self.transaction(run_id) as db:
            db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?) "
                           "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value",
                           [(k, v, run_id) for k, v in tags.items()])
            if RUN_NAME_TAG in tags:
                db.execute("UPDATE runs SET name = ? WHERE run_uuid = ?", (tags[RUN_NAME_TAG], run_id))

    def log_input(self, run_id: str, dataset: dict, input_tags: dict[str, str]) -> None:
        """A dataset input, as ``log_inputs``: the experiment's dataset row is shared by every run
        that used the same (name, digest); one input edge per run and dataset, with its tags."""
        with self.transaction(run_id) as db:
            found = db.execute("SELECT dataset_uuid FROM datasets WHERE experiment_id = ? AND name = ? AND digest = ?",
                               (int(self.experiment_id), dataset["name"], dataset["digest"])).fetchone()
            if found is None:
                dataset_uuid = uuid.uuid4().hex
                db.execute("INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type, "
                           "dataset_source, dataset_schema, dataset_profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (dataset_uuid, int(self.experiment_id), dataset["name"], dataset["digest"],
                            dataset["source_type"], dataset["source"], dataset["schema"], dataset["profile"]))
            else:
                dataset_uuid = found[0]
            exists = db.execute("SELECT 1 FROM inputs WHERE source_type = 'DATASET' AND source_id = ? AND "
                                "destination_type = 'RUN' AND destination_id = ?", (dataset_uuid, run_id)).fetchone()
            if exists is None:
                input_uuid = uuid.uuid4().hex
                db.execute("INSERT INTO inputs (input_uuid, source_type, source_id, destination_type, destination_id) "
                           "VALUES (?, 'DATASET', ?, 'RUN', ?)", (input_uuid, dataset_uuid, run_id))
                db.executemany("INSERT INTO input_tags (input_uuid, name, value) VALUES (?, ?, ?)",
                               [(input_uuid, k, v) for k, v in input_tags.items()])

    def terminate(self, run_id: str, status: str) -> None:
        """The run's final status and end time, as ``set_terminated``."""
        with self.transaction(run_id) as db:
            db.execute("UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?", (status, now_ms(), run_id))

    def close(self) -> None:
        self.connection.close()


def check_run_active(db: sqlite3.Connection, run_id: str) -> None:
    """MLflow's ``_check_run_is_active`` (and its ``_get_run``), in MLflow's words."""
    found = db.execute("SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
    if found is None:
        raise RunGone(f"Run with id={run_id} not found")
    if found[0] != "active":
        raise RunGone(f"The run {run_id} must be in the 'active' state. Current state is {found[0]}.")


def check_experiment_active(db: sqlite3.Connection, experiment_id: str) -> None:
    """MLflow's ``_check_experiment_is_active`` before a run is created in it, in MLflow's words."""
    found = db.execute("SELECT lifecycle_stage FROM experiments WHERE experiment_id = ?",
                       (int(experiment_id),)).fetchone()
    if found is None:
        raise RunGone(f"No Experiment with id={experiment_id} exists")
    if found[0] != "active":
        raise RunGone(f"The experiment {experiment_id} must be in the 'active' state. Current state is {found[0]}.")


def copy_folder_into(folder: str | Path, destination: Path) -> None:
    """A local run's ``log_artifacts``: the folder's files copied in, without their permissions
    (as MLflow's local artifact repository copies them)."""
    import shutil

    destination.mkdir(parents=True, exist_ok=True)
    shutil.copytree(folder, destination, dirs_exist_ok=True, copy_function=shutil.copyfile)


def copy_file_into(path: str | Path, destination: Path) -> None:
    """A local run's ``log_artifact``: written beside its final name, then renamed, so a reader
    (``regfw resume`` loading a checkpoint) never sees half a file."""
    import shutil

    path = Path(path)
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / path.name
    partial = destination / f".{path.name}.{os.getpid()}.partial"
    shutil.copyfile(path, partial)
    shutil.copystat(path, partial)
    os.replace(partial, target)

