"""Writing one run: the tracker interface every writer uses (runner, checkpoints, sweeps).

``log_metric`` costs about 4 ms a call on SQLite; buffered rows written in bulk
(:mod:`regfw.store.bulk`) cost ~13 us each, so tracking stays cheap even for 500000-epoch runs. :class:`regfw.store.null.NullTracker`
(``--no-track``) has the same interface and writes nothing; ``recording`` tells them apart.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from regfw.errors import RegfwError
from regfw.figures import rounded
from regfw.start_times import next_start_ms  # runs one process creates list in the order it made them
from regfw.store import tags as T
from regfw.store.keys import stored
from regfw.store.client import experiment_id, open_client, param_text
from regfw.store.direct import RunGone, refused_metric_name
from regfw.store.uri import store_error

FLUSH_ROWS = 1000  # MLflow's limit per log_batch call
FLUSH_SECONDS = 5.0
PARAMS_PER_BATCH = 100


class MlflowTracker:
    """One MLflow run: params and tags up front, metrics buffered, status at the end.

    Written straight into the SQLite tables where :mod:`regfw.store.direct` can (an existing
    store and experiment: no MLflow import at all), else through ``MlflowClient``, which is also
    what creates a new store or experiment and resumes a run. ``extra_tags`` are added to the run
    when it starts (a sweep's child runs carry their parent's).

    A run that someone deletes or garbage-collects while it is written is refused by MLflow's
    check (``RunGone``, on either path): the first refusal is raised, ``gone`` keeps it, and from
    then on every write to the run is dropped: nothing more reaches the store, nor its folder."""

    recording = True

    def __init__(self, uri: str, experiment_name: str, *, extra_tags: dict | None = None):
        self.uri = uri
        self.experiment_name = experiment_name
        self.extra_tags = dict(extra_tags or {})
        self.client = None  # MlflowClient, opened only when needed (self.mlflow())
        self.direct = None  # regfw.store.direct.DirectStore, or None: everything through the client
        self.experiment_id = None
        self.run_id: str | None = None
        self._rows: list = []
        self._last_flush = time.monotonic()
        self.artifact_uri: str | None = None
        self.gone: RunGone | None = None  # set once the store refused a write: the run was deleted
        self._metric_keys: set[str] = set()  # names already checked against MLflow's rules

    def open(self) -> "MlflowTracker":
        """Connect, creating the database and experiment if needed; fail in one line early."""
        from regfw.store.direct import DirectStore
        from regfw.store.uri import check_experiment_name, check_reachable

        check_experiment_name(self.experiment_name)
        check_reachable(self.uri, create=True)
        self.direct = DirectStore.open(self.uri, self.experiment_name)
        if self.direct is None:
            self.mlflow()  # creates (or migrates, or refuses in one line) the store and the experiment
            self.direct = DirectStore.open(self.uri, self.experiment_name)
        if self.direct is not None:
            self.experiment_id = self.direct.experiment_id
        return self

    def mlflow(self):
        """The ``MlflowClient`` on this store (opened on first use, with the experiment's id)."""
        if self.client is None:
            client = open_client(self.uri, create=True)
            self.experiment_id = experiment_id(client, self.uri, self.experiment_name)
            self.client = client
        return self.client

    def share_from(self, other: "MlflowTracker") -> "MlflowTracker":
        """Use ``other``'s open connection (a sweep's bucket opens the store once for its runs)."""
        self.client, self.experiment_id, self.direct = other.client, other.experiment_id, other.direct
        return self

    def start(self, run_name: str, params: dict, tags: dict) -> str:
        """Create the run with its tags and params."""
        from regfw.store.direct import RUN_NAME_TAG, acceptable

        tags = {k: str(v) for k, v in (dict(tags) | self.extra_tags).items()}
        texts = {k: param_text(v) for k, v in params.items()}
        try:
            if self.direct is not None and tags.get(RUN_NAME_TAG, run_name) == run_name and \
                    acceptable(texts, tags | {RUN_NAME_TAG: run_name}):
                self.run_id, self.artifact_uri = self.direct.create_run(run_name, tags, texts, next_start_ms())
            else:
                self._start_through_mlflow(run_name, texts, tags)
        except Exception as exc:  # noqa: BLE001
            error = exc if isinstance(exc, RegfwError) else gone_from(exc) or store_error(self.uri, exc)
            self.end_quietly("FAILED", str(error))  # created, then its params refused: not left RUNNING
            raise error from None
        return self.run_id

    def _start_through_mlflow(self, run_name: str, params: dict[str, str], tags: dict[str, str]) -> None:
        from mlflow.entities import Param as MlParam
        from mlflow.utils.validation import _validate_param, _validate_tag

        # MLflow's own checks of every name and value, before the run exists (log_batch would
        # make them only after create_run, leaving a run behind).
        try:
            for key, value in params.items():
                _validate_param(key, value)
            for key, value in tags.items():
                _validate_tag(key, value)
        except Exception as exc:  # noqa: BLE001 - MLflow's message, whole, on one line
            raise RegfwError(" ".join(str(getattr(exc, "message", exc)).split())) from None
        client = self.mlflow()
        run = client.create_run(self.experiment_id, run_name=run_name, tags=tags, start_time=next_start_ms())
        self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
        items = [MlParam(k, v) for k, v in params.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            client.log_batch(self.run_id, params=items[i:i + PARAMS_PER_BATCH])

    def attach(self, run_id: str, tags: dict, metrics=()) -> dict[str, int]:
        """Continue an existing run: RUNNING again, its failure reason gone, ``tags`` added.
        Returns the last step already logged for each of ``metrics``."""
        client = self.mlflow()
        self.run_id = run_id
        client.update_run(run_id, status="RUNNING")
        run = client.get_run(run_id)
        self.artifact_uri = run.info.artifact_uri
        if T.FAILURE in run.data.tags:
            client.delete_tag(run_id, T.FAILURE)
        self.set_tags(tags)
        logged = {}
        for name in metrics:
            points = client.get_metric_history(run_id, stored(name))
            if points:
                logged[name] = max(m.step for m in points)
        return logged

    def log_metrics(self, rows) -> None:
        """Buffer ``(key, value, step)`` rows; written in batches, at latest every few seconds.
        Keys are regfw's plain names, stored under their chart section (``regfw.store.keys``)."""
        if self.gone is not None:
            return
        now = int(time.time() * 1000)
        rows = [(stored(k), rounded(v), int(s), now) for k, v, s in rows]  # every metric as regfw shows it
        for key in {row[0] for row in rows} - self._metric_keys:  # a name is checked once, before its first row
            refused = refused_metric_name(key)
            if refused:
                raise RegfwError(refused)
            self._metric_keys.add(key)
        self._rows.extend(rows)
        if len(self._rows) >= FLUSH_ROWS or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffer. A signal waits until the batch in flight is written (MLflow would
        otherwise wrap it in its own error); a batch that failed stays buffered for the next try."""
        from regfw.interrupts import held

        self._last_flush = time.monotonic()
        if not self._rows or self.gone is not None:
            return
        with held() as signals, self.refusals():
            if self.direct is not None:
                from regfw.store.bulk import write_metrics

                try:
                    write_metrics(self.direct, {self.run_id: self._rows})
                    self._rows = []
                except RunGone:
                    raise
                except Exception:  # noqa: BLE001 - rolled back whole: MLflow's log_batch writes them, or says why not
                    pass
            if self._rows:
                from mlflow.entities import Metric

                client = self.mlflow()
                while self._rows:
                    rows = self._rows[:FLUSH_ROWS]
                    client.log_batch(self.run_id, metrics=[Metric(k, v, ts, s) for k, v, s, ts in rows])
                    del self._rows[:len(rows)]
        signals.deliver()

    @contextlib.contextmanager
    def refusals(self):
        """MLflow's refusal of a write to a run that is no longer active (from the direct path's
        own check, or from MLflow's client) kept in ``gone`` and raised as one line; every later
        write is then dropped."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001
            gone = exc if isinstance(exc, RunGone) else gone_from(exc)
            if gone is None:
                raise
            self._rows = []
            self.gone = RunGone(f"the run was deleted from the store while regfw wrote it ({gone}); "
                                "nothing more was written to it")
            raise self.gone from None

    def set_tags(self, tags: dict) -> None:
        from regfw.store.direct import acceptable

        if not tags or self.gone is not None:
            return
        tags = {k: str(v) for k, v in tags.items()}
        with self.refusals():
            if self.direct is not None and acceptable({}, tags):
                self.direct.set_tags(self.run_id, tags)
                return
            from mlflow.entities import RunTag

            self.mlflow().log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def artifact_folder(self) -> Path | None:
        """The run's artifact folder when it is on this machine (a SQLite store's ``file://``
        artifacts): files written there are the run's artifacts, with no copy through a temporary
        folder (a few ms per file on a busy disk, paid by every sweep point). None otherwise."""
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        if self.gone is not None:  # a deleted run's folder is not re-created
            return None
        parsed = urlparse(self.artifact_uri or "")
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            return None
        return Path(url2pathname(parsed.path))

    def _copy_destination(self, artifact_path: str | None) -> Path | None:
        """Where an artifact is copied without MLflow (a direct run's folder on this machine), or None."""
        local = self.artifact_folder() if self.direct is not None else None
        if local is None:
            return None
        return local / artifact_path if artifact_path else local

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        if self.gone is not None:
            return
        destination = self._copy_destination(artifact_path)
        if destination is None:
            self.mlflow().log_artifacts(self.run_id, str(folder), artifact_path)
            return
        from regfw.store.direct import copy_folder_into

        copy_folder_into(folder, destination)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.gone is not None:
            return
        destination = self._copy_destination(artifact_path)
        if destination is None:
            self.mlflow().log_artifact(self.run_id, str(path), artifact_path)
            return
        from regfw.store.direct import copy_file_into

        copy_file_into(path, destination)

    def log_input(self, source: dict, context: str = "train") -> None:
        """A dataset input (``Data.source``): fills the Dataset column of MLflow's UI."""
        from regfw.store.direct import dataset_fits

        dataset = {"name": str(source["name"]), "digest": str(source["digest"])[:36],
                   "source_type": str(source.get("source_type", "local")),
                   "source": json.dumps({"uri": str(source.get("source", ""))}),
                   "schema": json.dumps(source["schema"]) if source.get("schema") else None,
                   "profile": json.dumps(source["profile"]) if source.get("profile") else None}
        input_tags = {"mlflow.data.context": context}
        if self.gone is not None:
            return
        with self.refusals():
            if self.direct is not None and dataset_fits(dataset, input_tags):
                self.direct.log_input(self.run_id, dataset, input_tags)
                return
            from mlflow.entities import Dataset, DatasetInput, InputTag

            self.mlflow().log_inputs(self.run_id, [DatasetInput(Dataset(**dataset),
                                                                [InputTag(k, v) for k, v in input_tags.items()])])

    def end(self, status: str) -> None:
        """The final status. Rows the store refuses at this last flush (a store MLflow itself
        cannot write) are dropped, the run is marked FAILED with that reason, and it is raised in
        one line: a run never stays RUNNING because its last metrics failed."""
        try:
            self.flush()
        except RunGone:
            raise
        except Exception as exc:  # noqa: BLE001
            error = exc if isinstance(exc, RegfwError) else store_error(self.uri, exc)
            self._rows = []
            try:
                self.set_tags({T.FAILURE: str(error)[:5000]})
            except Exception:  # noqa: BLE001 - the store itself may be what failed
                pass
            self._terminate("FAILED")
            raise error from None
        self._terminate(status)

    def _terminate(self, status: str) -> None:
        if self.gone is not None:
            return
        try:
            with self.refusals():
                if self.direct is not None:
                    self.direct.terminate(self.run_id, status)
                else:
                    self.mlflow().set_terminated(self.run_id, status=status)
        except RegfwError:
            raise
        except Exception as exc:  # noqa: BLE001 - a store MLflow cannot write: one line
            raise store_error(self.uri, exc) from None

    def end_quietly(self, status: str, reason: str | None = None) -> None:
        """A run created before its process was stopped must not stay RUNNING in the store; a
        FAILED or KILLED one carries its reason like every other (``regfw.failure``)."""
        if self.run_id is None or self.gone is not None or (self.client is None and self.direct is None):
            return
        default = {"KILLED": "interrupted", "FAILED": "failed while the run was being set up"}.get(status)
        try:
            if reason or default:
                self.set_tags({T.FAILURE: (reason or default)[:5000]})
        except Exception:  # noqa: BLE001 - the store itself may be what failed
            pass
        try:
            self.end(status)
        except Exception:  # noqa: BLE001 - the store itself may be what failed
            pass


def gone_from(exc: Exception) -> RunGone | None:
    """MLflow's refusal of a run or experiment that is no longer active (deleted, or gc'd: not
    found) as a :class:`RunGone` in MLflow's words; None for any other error."""
    text = " ".join(str(getattr(exc, "message", exc)).split())
    if "must be in the 'active' state" in text or (text.startswith("Run with id=") and text.endswith("not found")) \
            or text.startswith("No Experiment with id="):
        return RunGone(text)
    return None
