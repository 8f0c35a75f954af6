"""Where runs are stored: the tracking URI, reaching it, and saying in one line why it cannot be used."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

from regfw.errors import RegfwError, squeeze

STORE_DIR = "mlruns"
SQLITE = "sqlite:///"


def default_tracking_uri(cwd: str | Path | None = None) -> str:
    root = Path(cwd or os.getcwd()).resolve() / STORE_DIR
    return f"{SQLITE}{root / 'mlflow.db'}"


def tracking_uri(explicit: str | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the local ``mlruns/`` store."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores and in-memory SQLite)."""
    if not uri.startswith(SQLITE):
        return None
    path = uri[len(SQLITE):].split("?", 1)[0]
    return Path(path) if path not in ("", ":memory:") else None


def quiet_libraries() -> None:
    """Keep MLflow's INFO lines, alembic's migrations and SQLAlchemy warnings off the terminal."""
    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3", "git"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # A store failure is logged by MLflow with a traceback before it raises; regfw reports it in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    for module in ("mlflow", "sqlalchemy", "alembic", "pydantic"):
        warnings.filterwarnings("ignore", module=module)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars when reading a run back
    # MLflow prints "View run ... / View experiment ..." links (which open its UI in GenAI mode) when a
    # run on a server ends; regfw prints its own line for the run.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


# Stores MLflow 3 can use (a database through SQLAlchemy, or a tracking server); "+driver" ignored.
SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
SQLITE_HINT = "use a SQLite file: --tracking-uri sqlite:///PATH/mlflow.db"


def check_form(uri: str) -> None:
    """Refuse in one line a URI no run can be kept in, before MLflow answers with its own text
    (file stores in maintenance mode, unknown schemes as the model registry's)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in uri):  # a pasted newline would become part of a file name
        raise RegfwError(f"tracking URI {uri!r} holds a control character (a newline?); give it on one line")
    scheme = urlparse(uri).scheme.split("+", 1)[0].lower()
    if scheme in ("", "file") or (len(scheme) == 1 and uri[1:2] == ":"):  # a path (C:\ too) or file://
        raise RegfwError(f"tracking URI {uri!r} is a folder store (a path or file://), which MLflow 3 no longer "
                         f"writes; {SQLITE_HINT}")
    if scheme not in SCHEMES:
        raise RegfwError(f"tracking URI {uri!r} has an unknown scheme '{scheme}'; {SQLITE_HINT}, or "
                         "http://HOST:PORT for a tracking server")
    if scheme == "sqlite" and sqlite_path(uri) is None and uri.split("?")[0] not in ("sqlite://", "sqlite:///:memory:"):
        raise RegfwError(f"tracking URI {uri!r} is not a SQLite file URI; {SQLITE_HINT}")
    if scheme == "sqlite" and sqlite_path(uri) is None:
        raise RegfwError(f"tracking URI {uri!r} is an in-memory SQLite store: every run would vanish when regfw "
                         f"exits; {SQLITE_HINT}")


NAME_MAX, PATH_MAX = 255, 4095  # bytes: Linux's limits for one path component and a whole path
PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))


def check_sqlite_place(path: Path, uri: str) -> None:
    """A SQLite store's path must be one the OS can hold and on a real filesystem: an over-long name
    is an OS error deep inside MLflow, and SQLite retries its locks for a minute under /proc."""
    encoded = [len(part.encode("utf-8", "surrogateescape")) for part in path.parts]
    if max(encoded, default=0) > NAME_MAX or len(str(path).encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise RegfwError(f"tracking store {uri}: the path is too long for the OS "
                         f"(at most {NAME_MAX} bytes a name, {PATH_MAX} in all)")
    place = path.absolute()
    for pseudo in PSEUDO_FILESYSTEMS:
        if place == pseudo or pseudo in place.parents:
            raise RegfwError(f"tracking store {uri}: {pseudo} is the kernel's, not a place for a database; "
                             f"{SQLITE_HINT}")


def check_sqlite_file(path: Path, uri: str) -> None:
    """The SQLite file, if it exists, must be a database that is MLflow's or empty: a folder would
    make MLflow retry for minutes, and another application's database must not get MLflow's tables."""
    import sqlite3

    if not path.exists():
        return
    if not path.is_file():
        raise RegfwError(f"tracking store {uri}: {path} is {'a folder' if path.is_dir() else 'not a file'}; "
                         f"give the database file inside it, e.g. sqlite:///{path / 'mlflow.db'}")
    if path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "alembic_version" in tables:
                from regfw.store.schema import check_version

                check_version(db, uri)  # another MLflow's store: refused, never upgraded in place
            elif "experiments" in tables:  # MLflow's first tables, made by another process this moment
                from regfw.store.schema import migration_revisions, wait_until_made

                wait_until_made(db, migration_revisions()[1], None)
    except sqlite3.Error as exc:
        if "locked" in str(exc):  # another regfw writing to it: MLflow waits its turn
            return
        raise RegfwError(f"tracking store {uri}: {path} is not a SQLite database ({squeeze(str(exc), 80)})") from None
    if tables and not tables & {"alembic_version", "experiments"}:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise RegfwError(f"tracking store {uri}: {path} is another application's database (tables {shown}); "
                         "regfw will not add MLflow's tables to it: give a new file")


def check_reachable(uri: str, *, create: bool = True) -> None:
    """Fail in one line, before MLflow is even imported, on a URI no store can be at, a server
    that does not answer or a SQLite file that cannot be used; ``create=False`` (readers) refuses
    a missing database."""
    check_form(uri)
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:  # urllib: "Port out of range 0-65535" / "Port could not be cast"
            raise RegfwError(f"tracking URI {uri!r} has an invalid port (1-65535)") from None
        if not parsed.hostname:
            raise RegfwError(f"tracking URI {uri!r} names no host; e.g. http://127.0.0.1:5000")
        try:
            with socket.create_connection((parsed.hostname, port), timeout=3):
                pass
        except OSError as exc:
            raise RegfwError(f"tracking server {uri} is unreachable ({exc.strerror or type(exc).__name__}); "
                             "start it, or use --tracking-uri / --no-track") from None
        return
    path = sqlite_path(uri)
    if path is None:
        return
    check_sqlite_place(path, uri)
    check_sqlite_file(path, uri)
    if not create:
        if not path.exists():
            raise RegfwError(f"no run store at {path}; run something first (e.g. `regfw run linear`) "
                             "or pass --tracking-uri")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegfwError(f"cannot create the store folder {path.parent}: {exc.strerror}") from None
    check_writable_folder(path.parent)


def check_writable_folder(folder: Path) -> None:
    """A writer's store folder must take new files (the database, SQLite's journal, the lock,
    the artifacts): MLflow retries an unwritable one for minutes before "unable to open database
    file". Tried by making a file there, since permission bits tell root nothing (and nothing of
    an immutable folder or a read-only mount)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".regfw-probe-"):
            pass
    except OSError as exc:
        raise RegfwError(f"cannot write in the store folder {folder}: {exc.strerror or type(exc).__name__}; "
                         "give a folder this user can write, or --no-track") from None


MAX_EXPERIMENT_NAME = 256  # the width of MLflow's experiments.name column


def check_experiment_name(name: str) -> None:
    """An MLflow experiment name regfw can create: one line, not blank, that fits MLflow's column
    (a longer one fails inside the store with an error that names neither). Any other text is
    fine: the artifact folder made from it is never a path (``client.artifact_folder_name``)."""
    if not name or not name.strip():
        raise RegfwError("the experiment name is empty")
    if len(name) > MAX_EXPERIMENT_NAME:
        raise RegfwError(f"experiment name is {len(name)} characters; MLflow keeps at most {MAX_EXPERIMENT_NAME}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise RegfwError(f"experiment name {name!r} holds a control character (a newline?); give one line of text")


def store_error(uri: str, exc: Exception) -> RegfwError:
    """Any failure of the store as one line that names it."""
    text = squeeze(str(exc), 160)
    path = sqlite_path(uri)
    if path is not None and path.is_file() and not os.access(path, os.W_OK):
        return RegfwError(f"cannot use tracking store {uri}: the database file is read-only ({type(exc).__name__}: {text})")
    return RegfwError(f"cannot use tracking store {uri}: {type(exc).__name__}: {text}")


@contextlib.contextmanager
def store_lock(uri: str, timeout: float = 120.0):
    """An exclusive file lock beside a SQLite store (``mlflow.db.lock``); a no-op for other stores.

    MLflow's first-time migrations race when several processes open a fresh SQLite file."""
    path = sqlite_path(uri)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, MLflow's own retry only
        fcntl = None
    handle = None
    if path is not None and fcntl is not None:
        try:
            handle = open(f"{path}.lock", "a+")
        except OSError:  # a read-only folder: nothing can be created there anyway, let MLflow say why
            handle = None
    if handle is None:
        yield
        return
    with handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RegfwError(f"tracking store {uri} stayed locked by another process for {timeout:.0f} s "
                                     f"(lock file {path}.lock)") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
