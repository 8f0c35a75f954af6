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


def check_reachable(uri: str, *, create: bool = True) -> None:
    """Fail in one line, before MLflow is even imported, on a server that does not answer or a
    SQLite folder that cannot exist; ``create=False`` (readers) refuses a missing database."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
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
    if not create:
        if not path.exists():
            raise RegfwError(f"no run store at {path}; run something first (e.g. `regfw run linear`) "
                             "or pass --tracking-uri")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegfwError(f"cannot create the store folder {path.parent}: {exc.strerror}") from None


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
