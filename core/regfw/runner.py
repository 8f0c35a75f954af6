"""One run, start to finish: build the parts, open the run, train, and leave a truthful record.

Everything that can fail on the user's input (configuration, device, dataset files, a plugin's
factory) is built before the MLflow run is created: such a failure is one line and no run. Once
the run exists, whatever ends it (success, divergence, Ctrl-C, SIGTERM, a plugin raising) the
buffered metrics are flushed, the artifacts that exist are logged and the run gets its final
status: FINISHED, FAILED (reason in the ``regfw.failure`` tag) or KILLED.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from regfw.build import build_state
from regfw.config import Config
from regfw.device import resolve_device, use_threads
from regfw.engine import train
from regfw.errors import RegfwError, one_line
from regfw.interrupts import Interrupted, held
from regfw.protocols import RunView
from regfw.provenance import run_tags
from regfw.recorder import Diverged, History, Recorder
from regfw.results import metric_rows, summarise
from regfw.store import tags as T


@dataclass
class Outcome:
    status: str  # FINISHED | FAILED | KILLED
    run_id: str | None
    history: History
    summary: dict = field(default_factory=dict)
    learned: dict = field(default_factory=dict)
    seconds: float = 0.0
    device: str = ""
    error: str | None = None
    exit_code: int = 0
    late_signal: int | None = None  # Ctrl-C/SIGTERM while the ended run was being written
    pruned_at: int | None = None  # a search's pruner stopped the run after this epoch


class Pruned(RegfwError):
    """Raised by a ``watch`` callback: a search's pruner stops this run here (it ends FINISHED,
    with everything recorded so far: the trial is pruned, not failed)."""

    def __init__(self, epoch: int):
        self.epoch = epoch
        super().__init__(f"pruned at epoch {epoch}")


def artifacts_writer(entry):
    """An experiment's own artifacts: ``register(..., artifacts=write)`` or the 0.1 ``extras``."""
    return getattr(entry, "artifacts", None) or entry.extras.get("artifacts")


def execute(config: Config, plugins, tracker, *, run_name: str, reporter=None,
            checkpoint_every: int | None = None, resume=None, parallel=None, snapshots: int | None = None,
            watch=None, before_start=None) -> Outcome:
    """Run ``config``. Raises :class:`RegfwError` for what fails before the run exists; once it
    exists, never raises: the outcome says how it ended.

    ``checkpoint_every``: save a checkpoint artifact every N epochs (:mod:`regfw.checkpoint`).
    ``resume``: a :class:`regfw.checkpoint.Resume`; the same MLflow run continues from it.
    ``snapshots``: keep that many parameter snapshots along training (:mod:`regfw.landscape.snapshots`).
    ``parallel``: this process's :class:`regfw.distributed.Parallel` under torchrun (one run,
    rank 0 writes it); the caller leaves the process group afterwards.
    ``watch(epoch, history, recorder)``: called after every epoch (a search reports its
    intermediate values there); raising :class:`Pruned` ends the run early, FINISHED.
    ``before_start(tags)``: sees the new run's tags once everything is built, before the run exists
    (``regfw rerun`` prints how they differ from the run it repeats).
    """
    registry = plugins.registry
    device = parallel.device(config) if parallel is not None else resolve_device(config.device)
    writer = artifacts_writer(registry.get("experiment", config.experiment))
    use_threads(config.train.get("threads"))
    state = build_state(config, registry, device, check_size=True)
    if parallel is not None:  # join the other ranks; on ranks other than 0 these write nothing
        tracker, checkpoint_every, reporter = parallel.start(state, tracker, checkpoint_every, reporter)
    if checkpoint_every and not tracker.recording:
        raise RegfwError("checkpoint_every needs a tracked run: checkpoints are stored in the MLflow run")
    tracker.open()
    history = state.history
    outcome = Outcome("FAILED", None, history, device=str(device))
    outcome.seconds = resume.seconds if resume is not None else 0.0  # time spent before a resume
    started = time.monotonic()
    tags = run_tags(config, plugins, device, state.data) | (parallel.tags() if parallel is not None else {})
    if before_start is not None:
        before_start(tags)
    # A signal while the run is being created is held back and delivered once it exists, so
    # the run is then marked KILLED instead of left RUNNING.
    with held() as early_signal:
        if resume is None:
            outcome.run_id = tracker.start(run_name, config.flat_params(), tags)
        else:
            outcome.run_id = resume.attach(tracker, tags)

    def progress(epoch, values):
        if reporter is not None:
            reporter.update(epoch, values)

    sink = tracker.log_metrics if resume is None else resume.sink(tracker.log_metrics)
    recorder = Recorder(history, sink, progress)
    extras: list = []  # more writers of artifacts into the run's folder (the snapshots)
    try:
        early_signal.deliver()
        if state.data.source and resume is None:
            tracker.log_input(state.data.source)
        start_epoch, saver = 1, None
        if resume is not None:  # after everything that draws random numbers: the RNG states win
            start_epoch = resume.restore(state)
        if checkpoint_every:
            from regfw.checkpoint import Checkpointer

            saver = Checkpointer(checkpoint_every, tracker, state, recorder,
                                 seconds=lambda: time.monotonic() - started + outcome.seconds, after=resume)
        if snapshots:
            from regfw.landscape.snapshots import Snapshots

            keeper = Snapshots(snapshots, state)
            extras.append(keeper)
            saver = _both(saver, keeper)
        if watch is not None:
            saver = _both(saver, lambda epoch: watch(epoch, history, recorder))
        if reporter is not None:
            reporter.start(config.experiment, config.train["epochs"], start_epoch)
        try:
            train(state, recorder, start_epoch=start_epoch, on_epoch_end=saver, parallel=parallel)
        except (RegfwError, KeyboardInterrupt, Interrupted):
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a swapped model whose shapes do not fit
            raise RegfwError(f"training failed at epoch {history.epochs_done + 1}: {one_line(exc)}") from exc
        outcome.status = "FINISHED"
    except Pruned as exc:
        outcome.status, outcome.pruned_at = "FINISHED", exc.epoch
    except (KeyboardInterrupt, Interrupted) as exc:
        outcome.status = "KILLED"
        outcome.exit_code = getattr(exc, "exit_code", 130)
        outcome.error = f"interrupted at epoch {history.epochs_done}"
    except Diverged as exc:
        outcome.error, outcome.exit_code = str(exc), 3
        history.epochs_done = exc.epoch  # the run stops at the epoch that diverged
    except RegfwError as exc:
        outcome.error, outcome.exit_code = str(exc), 1
    finally:
        if reporter is not None:
            reporter.finish()
        outcome.seconds = time.monotonic() - started + outcome.seconds
        with held() as late:  # the run is ending, and must end recorded: Ctrl-C waits
            if parallel is not None:  # rank 0 learns whether another rank failed or died
                parallel.settle(outcome)
            finish(outcome, state, tracker, recorder, writer, extras, hurry=lambda: bool(late.signals))
        # Not re-raised (the run is already final), but reported: a sweep stops after this point.
        outcome.late_signal = late.first
        if parallel is not None:
            # torchrun's agent SIGTERMs the surviving ranks once one has died; the run is recorded,
            # and an Interrupted raised now could only surface inside a garbage-collection callback
            # as a stray traceback. This process is about to exit with its own code anyway.
            import signal

            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return outcome


def _both(first, second):
    """Two ``on_epoch_end`` callbacks as one (either may be None)."""
    if first is None:
        return second

    def both(epoch: int) -> None:
        first(epoch)
        second(epoch)

    return both


def finish(outcome: Outcome, state, tracker, recorder: Recorder, writer=None, extras=(), hurry=None) -> None:
    """Flush, summarise and log artifacts for whatever exists, then set the final status.
    ``hurry()`` true (a Ctrl-C is waiting): the plots are skipped, everything else is written."""
    history = outcome.history
    if outcome.status == "KILLED":
        # An epoch cut short by the signal is not counted: keep what completed epochs recorded.
        recorder.pending = [p for p in recorder.pending if p[0] <= history.epochs_done]
    try:
        recorder.drain()
    except Diverged as exc:  # divergence seen in the last drain of an interrupted run
        outcome.status, outcome.error, outcome.exit_code = "FAILED", str(exc), 3
        history.epochs_done = exc.epoch
    except Exception:  # noqa: BLE001 - keep going: the status must still be written
        pass
    outcome.summary, outcome.learned = summarise(history, outcome.seconds, state.model, state.data,
                                                 state.loss_fn)
    try:
        tracker.log_metrics(metric_rows(outcome.summary, outcome.learned, history.epochs_done))
        tags = {T.EPOCHS_DONE: history.epochs_done}
        if outcome.error:
            tags[T.FAILURE] = outcome.error
        tracker.set_tags(tags)
        if tracker.recording and tracker.gone is None:  # a run deleted meanwhile gets no artifacts
            view = run_view(outcome, state)
            local = tracker.artifact_folder()
            if local is not None:  # the run's own folder on this machine: written in place
                local.mkdir(parents=True, exist_ok=True)
                write_artifacts(local, view, writer, extras, hurry)
            else:
                with tempfile.TemporaryDirectory(prefix="regfw-artifacts-") as folder:
                    write_artifacts(Path(folder), view, writer, extras, hurry)
                    tracker.log_artifacts(folder)
    finally:
        tracker.end(outcome.status)


def write_artifacts(folder: Path, view: RunView, writer, extras, hurry) -> None:
    from regfw.artifacts import write_all

    write_all(folder, view, writer, hurry=hurry)
    for extra in extras:
        try:
            extra.write(str(folder))
        except Exception:  # noqa: BLE001 - as a failed plot: never lose the run
            pass


def run_view(outcome: Outcome, state) -> RunView:
    config = state.config
    return RunView(config.experiment, outcome.status, config.to_dict(), config.flat_params(), state.model,
                   state.data, dict(outcome.history.curves), outcome.summary, outcome.learned)
