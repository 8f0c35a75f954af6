"""Opening an MLflow client on a store, and the experiment runs are filed under.

The ``MlflowClient`` API is used rather than the fluent one: no global active run, so tests and
parallel workers cannot step on each other. Every other module gets its client from here.
"""

from __future__ import annotations

from regfw.errors import RegfwError
from regfw.store import tags as T
from regfw.store.uri import (check_experiment_name, check_reachable, quiet_libraries, sqlite_path, store_error,
                             store_lock)


def open_client(uri: str, *, create: bool = False):
    """An ``MlflowClient`` on ``uri`` that has answered once. Readers pass ``create=False``:
    reading never creates an empty database. Every failure is one line."""
    quiet_libraries()
    check_reachable(uri, create=create)
    from mlflow import MlflowClient

    quiet_libraries()  # again: importing mlflow resets its loggers' levels
    try:
        if create:
            # One process at a time opens a store that may be new: MLflow's first-time migrations
            # (run when the client first touches the database) race between processes.
            with store_lock(uri):
                try:
                    client = MlflowClient(tracking_uri=uri)
                    client.search_experiments(max_results=1)
                except Exception:  # noqa: BLE001 - maybe another MLflow client made the new store meanwhile
                    if not made_by_another(uri):
                        raise
                    client = MlflowClient(tracking_uri=uri)  # once more, on the store it has finished
                    client.search_experiments(max_results=1)
                fewer_syncs(client)
        else:
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
    except RegfwError:
        raise
    except Exception as exc:  # noqa: BLE001 - any store failure becomes one line
        raise store_error(uri, exc) from None
    return client


def made_by_another(uri: str) -> bool:
    """After MLflow failed to open a new SQLite store: whether another process (a plain MLflow
    client, which takes no lock) was making it at the same moment, and has now finished. MLflow's
    own first-time migrations race between processes; the second to start fails half-way."""
    import contextlib
    import sqlite3

    from regfw.store.schema import migration_revisions, wait_until_made

    path = sqlite_path(uri)
    if path is None or not path.exists():
        return False
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)) as db:
        return wait_until_made(db, migration_revisions()[1], None) is None


def fewer_syncs(client) -> None:
    """Each of this process's connections to a SQLite store with ``synchronous=NORMAL``.

    Why: a run makes a dozen commits (create, params, tags, inputs, metric batches, status), and
    with SQLite's default every commit waits for the disk more than once. ``NORMAL`` is a setting
    of the connection, not of the file. The store's journal mode is left as MLflow (or its owner)
    left it: a store switched to WAL stays in WAL after every process exits, and readers that
    cannot write (a read-only results folder, ``?mode=ro``, another user) then fail with
    "attempt to write a readonly database"."""
    engine = sqlite_engine(client)
    if engine is None or getattr(engine, "_regfw_tuned", False):
        return
    from sqlalchemy import event

    def tune(connection, _record):
        connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(engine, "connect", tune)
    engine._regfw_tuned = True
    engine.dispose()  # connections opened before the listener reconnect with it


def sqlite_engine(client):
    """The SQLAlchemy engine behind ``client`` when its store is an MLflow SQL store on SQLite,
    else None (MlflowClient keeps its store on ``_tracking_client``; if that ever moves, the
    store simply keeps SQLite's default journal)."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    engine = getattr(store, "engine", None)
    if engine is None or getattr(engine.dialect, "name", None) != "sqlite":
        return None
    return engine


def experiment_id(client, uri: str, name: str) -> str:
    """The id of MLflow experiment ``name``, created (with artifacts beside a SQLite store) if needed."""
    from mlflow.exceptions import MlflowException

    check_experiment_name(name)
    try:
        # One process at a time creates the database and the experiment.
        with store_lock(uri):
            found = client.get_experiment_by_name(name)
            if found is not None:
                if found.lifecycle_stage == "deleted":
                    raise RegfwError(f"MLflow experiment '{name}' is deleted; restore it or use --experiment-name")
                if T.EXPERIMENT_KIND not in found.tags:  # made by an older regfw: open it on its runs too
                    client.set_experiment_tag(found.experiment_id, T.EXPERIMENT_KIND, T.KIND_TRAINING)
                return found.experiment_id
            path = sqlite_path(uri)
            # Artifacts live beside the database, under mlruns/, one folder per experiment.
            location = (path.parent / "artifacts" / artifact_folder_name(name)).resolve().as_uri() \
                if path is not None else None
            try:
                first = path is not None and _only_default(client)
                created = client.create_experiment(name, artifact_location=location,
                                                   tags={T.EXPERIMENT_KIND: T.KIND_TRAINING})
                if first:  # a SQLite store regfw just made: its empty Default is regfw's to hide
                    hide_empty_default(client)
                return created
            except MlflowException:
                found = client.get_experiment_by_name(name)  # another process created it first
                if found is None:
                    raise
                return found.experiment_id
    except RegfwError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise store_error(uri, exc) from None


FOLDER_BYTES = 200  # of NAME_MAX's 255: room for the hash that keeps a shortened name's folder its own


def artifact_folder_name(name: str) -> str:
    """The one folder name an experiment's artifacts get beside a SQLite store: its name when that is
    a plain file name, else a name that cannot be a path (no separator, not ``.`` or ``..``, short
    enough for the OS) with a hash of the whole name, so two names never share a folder.

    Why: an experiment name is the user's text, and MLflow accepts ``../../x``; joined to a path as
    it is, it would put a run's artifacts outside the store. Experiments that exist keep the
    location they were created with (MLflow stores it with the experiment)."""
    import hashlib

    plain = "/" not in name and "\\" not in name and name not in (".", "..") and \
        len(name.encode("utf-8", "surrogateescape")) <= FOLDER_BYTES
    if plain:
        return name
    safe = name.replace("/", "_").replace("\\", "_").encode("utf-8", "surrogateescape")[:FOLDER_BYTES]
    safe = safe.decode("utf-8", "ignore").lstrip(".") or "experiment"  # a cut never leaves half a character
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{safe}-{digest}"


def _only_default(client) -> bool:
    """Whether the store holds no experiment but MLflow's own "Default" (one MLflow has just
    created for regfw); a store with other experiments, and any server, is someone's namespace."""
    try:
        from mlflow.entities import ViewType

        return all(e.experiment_id == "0" for e in client.search_experiments(view_type=ViewType.ALL, max_results=2))
    except Exception:  # noqa: BLE001 - not knowing means not touching it
        return False


def hide_empty_default(client) -> None:
    """MLflow creates a "Default" experiment with every new database; in a SQLite store whose first
    experiment regfw creates, regfw never files runs there, so while it is empty it is marked deleted
    and MLflow's UI does not list it. Never on a server, nor in a store that already held experiments."""
    try:
        default = client.get_experiment("0")
        if default.name == "Default" and default.lifecycle_stage == "active" and not client.search_runs(["0"], max_results=1):
            client.delete_experiment("0")
    except Exception:  # noqa: BLE001 - a cosmetic step; another store may not have it
        pass


def param_text(value) -> str:
    """A configuration value as MLflow stores a param: lists as ``a,b,c``; None and the empty
    list as ``regfw show`` prints them, ``null`` and ``[]`` (not Python's "None" and nothing)."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return ",".join(map(str, value)) if value else "[]"
    return str(value)


OLD_TEXTS = {"null": "None", "[]": ""}  # how earlier runs stored None and [] (they still resume)


def same_param(logged: str, value) -> bool:
    """Whether a param a run logged (maybe by an older regfw) says ``value``."""
    text = param_text(value)
    return logged == text or logged == OLD_TEXTS.get(text)


def is_missing(exc: Exception) -> bool:
    """Whether an MLflow error says the run (or experiment) does not exist."""
    return "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower()
