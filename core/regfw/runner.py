"""One run, start to finish: build the parts, train, and leave a truthful MLflow record.

Whatever ends the run (success, divergence, Ctrl-C, SIGTERM, a plugin raising) the buffered
metrics are flushed, the artifacts that exist are logged and the run gets its final status:
FINISHED, FAILED (reason in the ``regfw.failure`` tag) or KILLED.
"""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from regfw import __version__
from regfw.config import PARTS, Config
from regfw.data import Data
from regfw.device import device_name, resolve_device
from regfw.engine import Diverged, History, Recorder, train
from regfw.errors import RegfwError
from regfw.plugins import Plugins

SMALL_MODEL = 16  # at most this many scalars: the learned parameters are logged and printed


from regfw.interrupts import Interrupted, held  # noqa: E402 - re-exported: regfw.runner.Interrupted


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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _build(entry, params: dict, *args, **kwargs):
    try:
        return entry.factory(*args, **kwargs, **params)
    except RegfwError:
        raise
    except Exception as exc:  # noqa: BLE001 - name the plugin, not a traceback
        raise RegfwError(f"{entry.kind} '{entry.name}' from plugin '{entry.plugin}' failed: {_one_line(exc)}") from exc


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy comes with torch's usual installs
        pass


def git_commit(cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def learned_parameters(model) -> dict:
    """The model's own report if it has one, else its parameters when the model is small."""
    if callable(getattr(model, "learned_parameters", None)):
        return {k: float(v) for k, v in model.learned_parameters().items()}
    params = list(model.named_parameters())
    if sum(p.numel() for _, p in params) > SMALL_MODEL:
        return {}
    out = {}
    for name, p in params:
        values = p.detach().cpu().flatten().tolist()
        if len(values) == 1:
            out[name] = values[0]
        else:
            out.update({f"{name}[{i}]": v for i, v in enumerate(values)})
    return out


def optimum_loss(model, data: Data) -> float | None:
    """Least-squares optimum on the training data for models linear in a feature basis."""
    basis = getattr(model, "feature_basis", None)
    if not callable(basis) or data.task != "regression":
        return None
    import torch

    with torch.no_grad():
        design = basis(data.x_train).double().cpu()
        target = data.y_train.double().cpu().reshape(len(design), -1)
        solution = torch.linalg.lstsq(design, target).solution
        return float(((design @ solution - target) ** 2).mean())


def tags_for(config: Config, plugins: Plugins, device, extra: dict | None = None) -> dict:
    import torch

    tags = {
        "regfw.experiment": config.experiment,
        "regfw.device": str(device),
        "regfw.device_name": device_name(device),
        "regfw.seed": config.seed,
        "regfw.version": __version__,
        "regfw.torch_version": torch.__version__,
    }
    for part in PARTS:
        entry = plugins.registry.get(part, getattr(config, part).name)
        info = plugins.info.get(entry.plugin)
        origin = entry.plugin
        if info and info.distribution:
            origin += f" ({info.distribution} {info.version})"
        tags[f"regfw.{part}"] = entry.name
        tags[f"regfw.{part}.plugin"] = origin
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    tags.update(extra or {})
    return tags


def execute(config: Config, plugins: Plugins, tracker, *, run_name: str, reporter=None,
            checkpoint_every: int | None = None, resume=None) -> Outcome:
    """Run ``config``; never raises for a run that started: the outcome says how it ended.

    ``checkpoint_every``: save a checkpoint artifact every N epochs (:mod:`regfw.checkpoint`).
    ``resume``: a :class:`regfw.checkpoint.Resume`; the same MLflow run continues from it.
    """
    import torch

    device = resolve_device(config.device)  # a missing device is bad input: no run is recorded
    registry = plugins.registry
    entries = {part: registry.get(part, getattr(config, part).name) for part in PARTS}
    # An experiment may add its own artifacts: extras={"artifacts": fn(folder, model, data, config)}.
    extra_artifacts = registry.get("experiment", config.experiment).extras.get("artifacts")
    tracker.open()
    history = History()
    outcome = Outcome("FAILED", None, history, device=str(device))
    outcome.seconds = resume.seconds if resume is not None else 0.0  # time spent before a resume
    started = time.monotonic()
    model = data = None
    # A signal while the run is being created is held back and delivered once it exists, so
    # the run is then marked KILLED instead of left RUNNING.
    with held() as early_signal:
        if resume is None:
            outcome.run_id = tracker.start(run_name, config.flat_params(), tags_for(config, plugins, device))
        else:
            outcome.run_id = resume.attach(tracker, tags_for(config, plugins, device))

    def progress(epoch, values):
        if reporter is not None:
            reporter.update(epoch, values)

    sink = tracker.log_metrics if resume is None else resume.sink(tracker.log_metrics)
    recorder = Recorder(history, sink, progress)
    try:
        early_signal.deliver()
        seed_everything(config.seed)
        data = _build(entries["dataset"], config.dataset.params, generator=torch.Generator().manual_seed(config.seed))
        if not isinstance(data, Data):
            raise RegfwError(f"dataset '{entries['dataset'].name}' from plugin '{entries['dataset'].plugin}' "
                             f"returned {type(data).__name__}, not regfw.data.Data")
        model = _build(entries["model"], config.model.params)
        loss_fn = _build(entries["loss"], config.loss.params)
        model.to(device)
        data = data.to(device)
        optimizer = _build(entries["optimizer"], config.optimizer.params, model.parameters())
        shuffle_generator = torch.Generator().manual_seed(config.seed + 1)
        start_epoch, saver = 1, None
        if resume is not None:  # after everything that draws random numbers: the RNG states win
            start_epoch = resume.restore(model, optimizer, shuffle_generator, history, device)
        if checkpoint_every:
            from regfw.checkpoint import Checkpointer

            saver = Checkpointer(checkpoint_every, tracker, model, optimizer, shuffle_generator, history, recorder,
                                 config, device, seconds=lambda: time.monotonic() - started + outcome.seconds,
                                 after=resume)
        if reporter is not None:
            reporter.start(config.experiment, config.train["epochs"], start_epoch)
        try:
            train(model, data, loss_fn, optimizer, config.train, generator=shuffle_generator,
                  recorder=recorder, history=history, start_epoch=start_epoch, on_epoch_end=saver)
        except (RegfwError, KeyboardInterrupt, Interrupted):
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a swapped model whose shapes do not fit
            raise RegfwError(f"training failed at epoch {history.epochs_done + 1}: {_one_line(exc)}") from exc
        outcome.status = "FINISHED"
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
        _finish(outcome, config, tracker, recorder, model, data, extra_artifacts)
    return outcome


def _finish(outcome: Outcome, config: Config, tracker, recorder: Recorder, model, data, extra_artifacts=None) -> None:
    """Flush, summarise and log artifacts for whatever exists, then set the final status.

    Ctrl-C and SIGTERM are held back meanwhile: the run is ending, and must end recorded."""
    with held():
        _finish_held(outcome, config, tracker, recorder, model, data, extra_artifacts)


def _finish_held(outcome: Outcome, config: Config, tracker, recorder: Recorder, model, data, extra_artifacts) -> None:
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
    summary = {f"final_{k}": v for k, v in history.final().items()}
    summary |= {f"best_{k}": v for k, v in history.best().items()}
    summary["train_seconds"] = outcome.seconds
    if model is not None:
        try:
            outcome.learned = learned_parameters(model)
            opt = optimum_loss(model, data) if data is not None else None
            if opt is not None:
                summary["optimum_loss"] = opt
                if "final_train_loss" in summary:
                    summary["excess_loss"] = summary["final_train_loss"] - opt
        except Exception:  # noqa: BLE001 - a summary is a bonus, the status is not
            pass
    outcome.summary = summary
    rows = [(k, v, history.epochs_done) for k, v in summary.items()]
    # MLflow metric names allow no brackets: weight[0] is logged as learned.weight.0
    rows += [(f"learned.{k}".replace("[", ".").replace("]", ""), v, history.epochs_done)
             for k, v in outcome.learned.items()]
    try:
        tracker.log_metrics(rows)
        tags = {"regfw.epochs_done": history.epochs_done}
        if outcome.error:
            tags["regfw.failure"] = outcome.error
        tracker.set_tags(tags)
        if tracker.run_id is not None:
            with tempfile.TemporaryDirectory(prefix="regfw-artifacts-") as folder:
                write_artifacts(Path(folder), outcome, config, model, data, extra_artifacts)
                tracker.log_artifacts(folder)
    finally:
        tracker.end(outcome.status)


def write_artifacts(folder: Path, outcome: Outcome, config: Config, model, data, extra_artifacts=None) -> None:
    """config.yaml, curves, the 1-D fit, learned parameters and the state_dict, as far as they exist."""
    from regfw import plots

    (folder / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    history = outcome.history
    title = f"{config.experiment} ({outcome.status.lower()})"
    for make in (
        lambda: plots.curves(history, ["train_loss", "test_loss"], folder / "loss_curve.png", title, "loss", log_y=True),
        lambda: plots.curves(history, ["train_accuracy", "test_accuracy"], folder / "accuracy_curve.png", title, "accuracy"),
        lambda: _fit_plot(folder, model, data, title),
        lambda: extra_artifacts(folder, model, data, config) if callable(extra_artifacts) else None,
    ):
        try:
            make()
        except Exception:  # noqa: BLE001 - a failed plot must not lose the run
            pass
    if outcome.learned:
        (folder / "learned_parameters.json").write_text(json.dumps(outcome.learned, indent=2), encoding="utf-8")
    if model is not None:
        import torch

        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / "model_state_dict.pt")


def _fit_plot(folder: Path, model, data, title: str):
    if model is None or data is None or data.task != "regression":
        return None
    if data.x_train.ndim != 2 or data.x_train.shape[1] != 1 or data.y_train.numel() != len(data.y_train):
        return None
    from regfw import plots

    return plots.fit(model, data.x_train, data.y_train, folder / "fit.png", title)
