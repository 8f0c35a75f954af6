"""MLflow tracking: where runs go, and a buffered writer that loses nothing on the way out.

``mlflow.log_metric`` costs about 4 ms a call on SQLite; buffering and ``log_batch`` brings a
metric to a fraction of that, so tracking stays cheap even for 500000-epoch runs. The
``MlflowClient`` API is used rather than the fluent one: no global active run, so tests and
parallel workers cannot step on each other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

from regfw.errors import RegfwError

STORE_DIR = "mlruns"
FLUSH_ROWS = 1000  # MLflow's limit per log_batch call
FLUSH_SECONDS = 5.0


def default_tracking_uri(cwd: str | Path | None = None) -> str:
    root = Path(cwd or os.getcwd()).resolve() / STORE_DIR
    return f"sqlite:///{root / 'mlflow.db'}"


def tracking_uri(explicit: str | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the local ``mlruns/`` store."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


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


def _check_reachable(uri: str) -> None:
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((parsed.hostname, port), timeout=3):
                pass
        except OSError as exc:
            raise RegfwError(f"tracking server {uri} is unreachable ({exc.strerror or type(exc).__name__}); "
                             "start it, or use --tracking-uri / --no-track") from None
    elif parsed.scheme == "sqlite":
        path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
        if path is not None and str(path) not in ("", ":memory:"):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RegfwError(f"cannot create the store folder {path.parent}: {exc.strerror}") from None


@contextlib.contextmanager
def store_lock(uri: str, timeout: float = 120.0):
    """An exclusive file lock beside a SQLite store (``mlflow.db.lock``); a no-op for other stores."""
    path = uri[len("sqlite:///"):].split("?", 1)[0] if uri.startswith("sqlite:///") else ""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, MLflow's own retry only
        fcntl = None
    handle = None
    if path not in ("", ":memory:") and fcntl is not None:
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


def _store_error(uri: str, exc: Exception) -> RegfwError:
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    path = Path(uri[len("sqlite:///"):].split("?", 1)[0]) if uri.startswith("sqlite:///") else None
    if path is not None and path.is_file() and not os.access(path, os.W_OK):
        return RegfwError(f"cannot use tracking store {uri}: the database file is read-only ({type(exc).__name__}: {text})")
    return RegfwError(f"cannot use tracking store {uri}: {type(exc).__name__}: {text}")


class MlflowTracker:
    """One MLflow run: params and tags up front, metrics buffered, status at the end."""

    def __init__(self, uri: str, experiment_name: str):
        self.uri = uri
        self.experiment_name = experiment_name
        self.client = None
        self.experiment_id = None
        self.run_id: str | None = None
        self._rows: list = []
        self._last_flush = time.monotonic()

    # -- store -------------------------------------------------------------------------------
    def open(self) -> "MlflowTracker":
        """Connect, creating the database and experiment if needed; fail in one line early."""
        quiet_libraries()
        _check_reachable(self.uri)
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        quiet_libraries()  # again: importing mlflow resets its loggers' levels

        try:
            # One process at a time creates the database and the experiment: MLflow's first-time
            # migrations race when several processes start on a fresh SQLite file.
            with store_lock(self.uri):
                self.client = MlflowClient(tracking_uri=self.uri)
                self.experiment_id = self._experiment_id(MlflowException)
        except RegfwError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure becomes one line
            raise _store_error(self.uri, exc) from None
        return self

    def _experiment_id(self, MlflowException) -> str:
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                raise RegfwError(f"MLflow experiment '{self.experiment_name}' is deleted; restore it or use --experiment-name")
            return found.experiment_id
        artifact_location = None
        if self.uri.startswith("sqlite:///"):
            # Artifacts live beside the database, under mlruns/, one folder per experiment.
            root = Path(self.uri[len("sqlite:///"):]).parent
            artifact_location = (root / "artifacts" / self.experiment_name).resolve().as_uri()
        try:
            return self.client.create_experiment(self.experiment_name, artifact_location=artifact_location)
        except MlflowException:
            # Another process created it first (parallel workers on a fresh store).
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise
            return found.experiment_id

    # -- run ---------------------------------------------------------------------------------
    def start(self, run_name: str, params: dict, tags: dict) -> str:
        from mlflow.entities import Param as MlParam

        try:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
            self.run_id = run.info.run_id
            items = [MlParam(k, _param_text(v)) for k, v in params.items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i:i + 100])
        except Exception as exc:  # noqa: BLE001
            raise _store_error(self.uri, exc) from None
        return self.run_id

    def log_metrics(self, rows) -> None:
        """Buffer ``(key, value, step)`` rows; written in batches, at latest every few seconds."""
        now = int(time.time() * 1000)
        self._rows.extend((k, float(v), int(s), now) for k, v, s in rows)
        if len(self._rows) >= FLUSH_ROWS or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffer. A signal waits until the batch in flight is written (MLflow would
        otherwise wrap it in its own error); a batch that failed stays buffered for the next try."""
        from mlflow.entities import Metric

        from regfw.interrupts import held

        self._last_flush = time.monotonic()
        with held() as signals:
            while self._rows:
                rows = self._rows[:FLUSH_ROWS]
                self.client.log_batch(self.run_id, metrics=[Metric(k, v, ts, s) for k, v, s, ts in rows])
                del self._rows[:len(rows)]
        signals.deliver()

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, folder: str | Path) -> None:
        self.client.log_artifacts(self.run_id, str(folder))

    def end(self, status: str) -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status=status)


class NullTracker:
    """``--no-track``: the same interface, nothing written."""

    run_id = None
    uri = None

    def open(self):
        return self

    def start(self, run_name, params, tags):
        return None

    def log_metrics(self, rows):
        pass

    def flush(self):
        pass

    def set_tags(self, tags):
        pass

    def log_artifacts(self, folder):
        pass

    def end(self, status):
        pass


def _param_text(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)
