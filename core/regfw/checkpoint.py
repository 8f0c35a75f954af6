"""Checkpoints stored in the MLflow run, and resuming that same run from the last one.

``regfw run ... --checkpoint-every N`` saves, every N epochs, the run's state
(:meth:`regfw.state.RunState.snapshot`) as a run artifact, ``checkpoint/checkpoint-<slot>.pt``,
written in two alternating slots so a process killed while writing one still leaves the other intact.

``regfw resume RUN_ID`` picks the newest checkpoint that loads (``torch.load(weights_only=True)``:
no pickled code is ever executed), rebuilds the configuration from it, checks it against the
parameters the run logged, and continues the same MLflow run: no second run, no parameter
written twice. Metric points the interrupted process logged after its last checkpoint are
recomputed, not logged again. On the CPU the resumed run ends with exactly the metrics and
parameters of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from regfw.errors import RegfwError
from regfw.interrupts import held
from regfw.state import load_snapshot
from regfw.store import is_missing, open_client, param_text, same_param, store_error
from regfw.store import tags as T

FOLDER = "checkpoint"
SLOTS = 2


def slot_name(slot: int) -> str:
    return f"checkpoint-{slot}.pt"


class Checkpointer:
    """The engine's ``on_epoch_end``: every ``every`` epochs, the run's state into its artifacts.

    Before saving, the recorder is drained and the tracker flushed, so the run in MLflow holds
    every metric up to the checkpoint's epoch: a resume continues right after it.
    """

    def __init__(self, every: int, tracker, state, recorder, *, seconds=lambda: 0.0, after=None):
        if not tracker.recording or tracker.run_id is None:
            raise RegfwError("checkpoint_every needs a tracked run: checkpoints are stored in the MLflow run")
        self.every, self.tracker, self.state, self.recorder, self.seconds = every, tracker, state, recorder, seconds
        # Continue the slot rotation of the run being resumed: never overwrite its newest checkpoint.
        self.count = (after.slot + 1) if after is not None else 0
        tracker.set_tags({T.CHECKPOINT_EVERY: every, T.HOST: socket.gethostname(), T.PID: os.getpid()})

    def __call__(self, epoch: int) -> None:
        if epoch % self.every == 0:
            self.save(epoch)

    def save(self, epoch: int) -> None:
        import torch

        self.recorder.drain()  # may raise Diverged: a diverged state is never saved
        self.tracker.flush()
        slot = self.count % SLOTS
        with held() as signals:  # a Ctrl-C waits for the checkpoint in hand to be complete
            with tempfile.TemporaryDirectory(prefix="regfw-checkpoint-") as folder:
                path = Path(folder) / slot_name(slot)
                torch.save(self.state.snapshot(epoch, self.tracker.run_id, self.seconds()), path)
                self.tracker.log_artifact(path, FOLDER)
            self.tracker.set_tags({T.CHECKPOINT_EPOCH: epoch})  # written last: the tag never names a missing file
            self.count += 1
        signals.deliver()


@dataclass
class Resume:
    """A run to continue and the checkpoint it continues from."""

    uri: str
    run_id: str
    experiment_name: str
    status: str
    params: dict
    tags: dict
    state: dict
    slot: int
    logged_until: dict = field(default_factory=dict)  # metric -> last step already in the run

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])

    @property
    def seconds(self) -> float:
        return float(self.state.get("seconds", 0.0))

    @property
    def every(self) -> int | None:
        text = self.tags.get(T.CHECKPOINT_EVERY)
        return int(text) if text and text.isdigit() else None

    def config(self, registry):
        """The run's configuration, re-validated, and checked against the params the run logged."""
        from regfw.config import resolve

        stored = self.state["config"]
        config = resolve(registry, stored["experiment"], config_file=stored)
        flat = config.flat_params()
        differ = [key for key, value in flat.items() if key in self.params and not same_param(self.params[key], value)]
        missing = [key for key in flat if key not in self.params]
        if differ or missing:
            key = (differ or missing)[0]
            logged = self.params.get(key, "(not logged)")
            raise RegfwError(f"run {self.run_id} cannot be resumed with this installation: parameter '{key}' was "
                             f"{logged!r} and would now be {param_text(flat[key])!r}")
        return config

    def attach(self, tracker, tags: dict) -> str:
        """Continue the MLflow run: RUNNING again, the old failure reason gone, nothing logged twice."""
        self.logged_until = tracker.attach(self.run_id, dict(tags) | {T.RESUMED_FROM: self.epoch},
                                           metrics=list(self.state["history"]))
        return self.run_id

    def sink(self, log_metrics):
        """Wrap the tracker's writer: points the interrupted process already logged are not repeated."""
        logged = self.logged_until

        def write(rows):
            rows = [r for r in rows if r[0] not in logged or r[2] > logged[r[0]]]
            if rows:
                log_metrics(rows)

        return write

    def restore(self, state) -> int:
        """Load the checkpoint into the freshly built run state; return the first epoch still to train."""
        return state.restore(self.state, self.run_id)


def _alive_elsewhere(tags: dict) -> bool:
    """The run's process still runs on this machine (a resume would write into a live run)."""
    if tags.get(T.HOST) != socket.gethostname():
        return False
    try:
        pid = int(tags.get(T.PID, ""))
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, OSError):
        return False
    try:  # a reused pid is not our run
        return b"regfw" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def load_resume(uri: str, run_id: str) -> Resume:
    """Find the run and its newest readable checkpoint; every problem is one line."""
    from mlflow.exceptions import MlflowException

    client = open_client(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if is_missing(exc):
            raise RegfwError(f"no run '{run_id}' in {uri}") from None
        raise store_error(uri, exc) from None
    except Exception as exc:  # noqa: BLE001 - a store that cannot be read is one line too
        raise store_error(uri, exc) from None
    if run.info.lifecycle_stage == "deleted":
        raise RegfwError(f"run {run_id} is deleted; restore it first")
    status = run.info.status
    tags = dict(run.data.tags)
    if status == "FINISHED":
        raise RegfwError(f"run {run_id} already FINISHED; nothing to resume")
    if status == "RUNNING" and _alive_elsewhere(tags):
        raise RegfwError(f"run {run_id} is still running (process {tags.get(T.PID)}); stop it before resuming")
    try:
        names = [a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run_id, FOLDER)]
    except Exception as exc:  # noqa: BLE001
        raise store_error(uri, exc) from None
    candidates = sorted(n for n in names if n.startswith("checkpoint-") and n.endswith(".pt"))
    if not candidates:
        raise RegfwError(f"run {run_id} has no checkpoint to resume from (run it with --checkpoint-every N)")
    best, problems = None, []
    with tempfile.TemporaryDirectory(prefix="regfw-resume-") as folder:
        for name in candidates:
            try:
                slot = int(name[len("checkpoint-"):-len(".pt")])
                state = load_snapshot(client.download_artifacts(run_id, f"{FOLDER}/{name}", folder))
            except Exception as exc:  # noqa: BLE001 - a torn or foreign file: try the other slot
                problems.append(f"{name}: {type(exc).__name__}")
                continue
            if state.get("run_id") not in (None, run_id):
                problems.append(f"{name}: belongs to run {state.get('run_id')}")
                continue
            if best is None or state["epoch"] > best[1]["epoch"]:
                best = (slot, state)
    if best is None:
        raise RegfwError(f"run {run_id} has no readable checkpoint ({'; '.join(problems)})")
    experiment = client.get_experiment(run.info.experiment_id)
    return Resume(uri, run_id, experiment.name, status, dict(run.data.params), tags, best[1], best[0])
