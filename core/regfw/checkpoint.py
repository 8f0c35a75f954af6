"""Checkpoints stored in the MLflow run, and resuming that same run from the last one.

``regfw run ... --checkpoint-every N`` saves, every N epochs, everything the next epoch depends
on: the model's and the optimizer's state, every random number generator the loop draws from
(torch's CPU generator, the shuffle generator, CUDA's when used, Python's and NumPy's), the
epoch, the metric curves so far and the resolved configuration. The file is a run artifact,
``checkpoint/checkpoint-<slot>.pt``, written in two alternating slots so a process killed while
writing one still leaves the other intact.

``regfw resume RUN_ID`` picks the newest checkpoint that loads (``torch.load(weights_only=True)``:
no pickled code is ever executed), rebuilds the configuration from it, checks it against the
parameters the run logged, and continues the same MLflow run: no second run, no parameter
written twice. Metric points the interrupted process logged after its last checkpoint are
recomputed, not logged again. On the CPU the resumed run ends with exactly the metrics and
parameters of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from regfw.errors import RegfwError

FORMAT = 1
FOLDER = "checkpoint"
SLOTS = 2
EPOCH_TAG = "regfw.checkpoint_epoch"
EVERY_TAG = "regfw.checkpoint_every"
RESUMED_TAG = "regfw.resumed_from_epoch"
HOST_TAG = "regfw.host"
PID_TAG = "regfw.pid"


def slot_name(slot: int) -> str:
    return f"checkpoint-{slot}.pt"


# -- random number generators --------------------------------------------------------------------
def rng_state(generator, device) -> dict:
    """Every generator the training loop may draw from, as tensors and plain numbers."""
    import torch

    state = {"torch": torch.get_rng_state(), "shuffle": generator.get_state(), "python": _python_state()}
    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy

        name, keys, pos, has_gauss, cached = numpy.random.get_state()
        state["numpy"] = {"keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached": float(cached)}
    except ImportError:  # pragma: no cover - numpy comes with torch's usual installs
        pass
    return state


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def restore_rng(state: dict, generator, device) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        try:
            import numpy
        except ImportError:  # pragma: no cover
            return
        numpy_state = state["numpy"]
        numpy.random.set_state(("MT19937", numpy_state["keys"].numpy().astype("uint32"), numpy_state["pos"],
                                numpy_state["has_gauss"], numpy_state["cached"]))


# -- saving --------------------------------------------------------------------------------------
class Checkpointer:
    """The engine's ``on_epoch_end``: every ``every`` epochs, a checkpoint into the run's artifacts.

    Before saving, the recorder is drained and the tracker flushed, so the run in MLflow holds
    every metric up to the checkpoint's epoch: a resume continues right after it.
    """

    def __init__(self, every: int, tracker, model, optimizer, generator, history, recorder, config, device, *,
                 seconds=lambda: 0.0, after=None):
        if tracker.run_id is None or not hasattr(tracker, "client"):
            raise RegfwError("--checkpoint-every stores checkpoints in the MLflow run; it cannot be used with --no-track")
        self.every = every
        self.tracker, self.model, self.optimizer, self.generator = tracker, model, optimizer, generator
        self.history, self.recorder, self.config, self.device = history, recorder, config, device
        self.seconds = seconds
        # Continue the slot rotation of the run being resumed: never overwrite its newest checkpoint.
        self.count = (after.slot + 1) if after is not None else 0
        tracker.set_tags({EVERY_TAG: every, HOST_TAG: socket.gethostname(), PID_TAG: os.getpid()})

    def __call__(self, epoch: int) -> None:
        if epoch % self.every == 0:
            self.save(epoch)

    def state(self, epoch: int) -> dict:
        curves = {name: [[int(e), float(v)] for e, v in points] for name, points in self.history.curves.items()}
        return {
            "format": FORMAT,
            "epoch": epoch,
            "run_id": self.tracker.run_id,
            "config": self.config.to_dict(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.generator, self.device),
            "history": curves,
            "seconds": float(self.seconds()),
            "saved_at": time.time(),
        }

    def save(self, epoch: int) -> None:
        import torch

        from regfw.interrupts import held

        self.recorder.drain()  # may raise Diverged: a diverged state is never saved
        self.tracker.flush()
        slot = self.count % SLOTS
        with held() as signals:  # a Ctrl-C waits for the checkpoint in hand to be complete
            with tempfile.TemporaryDirectory(prefix="regfw-checkpoint-") as folder:
                path = Path(folder) / slot_name(slot)
                torch.save(self.state(epoch), path)
                self.tracker.client.log_artifact(self.tracker.run_id, str(path), FOLDER)
            self.tracker.set_tags({EPOCH_TAG: epoch})  # written last: the tag never names a missing file
            self.count += 1
        signals.deliver()


def load_file(path: str | Path) -> dict:
    """Read a checkpoint: tensors and plain data only (``weights_only=True``), mapped to the CPU."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT or "epoch" not in state:
        raise ValueError("not a regfw checkpoint")
    return state


# -- resuming ------------------------------------------------------------------------------------
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
        text = self.tags.get(EVERY_TAG)
        return int(text) if text and text.isdigit() else None

    def config(self, registry):
        """The run's configuration, re-validated, and checked against the params the run logged."""
        from regfw.config import resolve
        from regfw.tracking import _param_text

        stored = self.state["config"]
        config = resolve(registry, stored["experiment"], config_file=stored)
        differ = [key for key, value in config.flat_params().items()
                  if key in self.params and self.params[key] != _param_text(value)]
        missing = [key for key in config.flat_params() if key not in self.params]
        if differ or missing:
            key = (differ or missing)[0]
            logged = self.params.get(key, "(not logged)")
            raise RegfwError(f"run {self.run_id} cannot be resumed with this installation: parameter '{key}' was "
                             f"{logged!r} and would now be {_param_text(config.flat_params()[key])!r}")
        return config

    def attach(self, tracker, tags: dict) -> str:
        """Continue the MLflow run: RUNNING again, the old failure reason gone, nothing logged twice."""
        from mlflow.entities import RunTag

        client = tracker.client
        tracker.run_id = self.run_id
        client.update_run(self.run_id, status="RUNNING")
        if "regfw.failure" in self.tags:
            client.delete_tag(self.run_id, "regfw.failure")
        tags = dict(tags) | {RESUMED_TAG: self.epoch}
        client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        for name in self.state["history"]:
            points = client.get_metric_history(self.run_id, name)
            if points:
                self.logged_until[name] = max(m.step for m in points)
        return self.run_id

    def sink(self, log_metrics):
        """Wrap the tracker's writer: points the interrupted process already logged are not repeated."""
        logged = self.logged_until

        def write(rows):
            rows = [r for r in rows if r[0] not in logged or r[2] > logged[r[0]]]
            if rows:
                log_metrics(rows)

        return write

    def restore(self, model, optimizer, generator, history, device) -> int:
        """Load the states into the freshly built parts; return the first epoch still to train."""
        state = self.state
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            text = " ".join(str(exc).split())[:160]
            raise RegfwError(f"checkpoint of run {self.run_id} does not fit the model built now: {text}") from None
        restore_rng(state["rng"], generator, device)
        for name, points in state["history"].items():
            history.curves[name] = [(int(e), float(v)) for e, v in points]
        history.epochs_done = self.epoch
        return self.epoch + 1


def _alive_elsewhere(tags: dict) -> bool:
    """The run's process still runs on this machine (a resume would write into a live run)."""
    if tags.get(HOST_TAG) != socket.gethostname():
        return False
    try:
        pid = int(tags.get(PID_TAG, ""))
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
    from regfw.tracking import _check_reachable, _store_error, quiet_libraries

    quiet_libraries()
    _check_reachable(uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    quiet_libraries()
    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
            raise RegfwError(f"no run '{run_id}' in {uri}") from None
        raise _store_error(uri, exc) from None
    except Exception as exc:  # noqa: BLE001 - a store that cannot be read is one line too
        raise _store_error(uri, exc) from None
    if run.info.lifecycle_stage == "deleted":
        raise RegfwError(f"run {run_id} is deleted; restore it first")
    status = run.info.status
    tags = dict(run.data.tags)
    if status == "FINISHED":
        raise RegfwError(f"run {run_id} already FINISHED; nothing to resume")
    if status == "RUNNING" and _alive_elsewhere(tags):
        raise RegfwError(f"run {run_id} is still running (process {tags.get(PID_TAG)}); stop it before resuming")
    try:
        names = [a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run_id, FOLDER)]
    except Exception as exc:  # noqa: BLE001
        raise _store_error(uri, exc) from None
    candidates = sorted(n for n in names if n.startswith("checkpoint-") and n.endswith(".pt"))
    if not candidates:
        raise RegfwError(f"run {run_id} has no checkpoint to resume from (run it with --checkpoint-every N)")
    best, problems = None, []
    with tempfile.TemporaryDirectory(prefix="regfw-resume-") as folder:
        for name in candidates:
            try:
                slot = int(name[len("checkpoint-"):-len(".pt")])
                local = client.download_artifacts(run_id, f"{FOLDER}/{name}", folder)
                state = load_file(local)
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
