"""A run's files: config.yaml, curves and the 1-D fit (SVG), learned parameters, the state dict, and
whatever the experiment's own ``artifacts`` writer adds. A file that cannot be made is skipped:
a failed plot must never lose the run."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from regfw.protocols import RunView


def write_all(folder: Path, run: RunView, writer=None, hurry=None) -> None:
    """Write every file into ``folder``; the plots are SVG (regfw.svg, no matplotlib). ``hurry()``
    true: skip the plots, which only redraw the recorded metrics, so a Ctrl-C held while a run is
    written waits for nothing it can do without."""
    from regfw import plots

    (folder / "config.yaml").write_text(run_yaml(run), encoding="utf-8")
    title = f"{run.experiment} ({run.status.lower()})"
    plots_made = (
        lambda: plots.curves(run.curves, ["train_loss", "test_loss"], folder / "loss_curve.svg", title, "loss", log_y=True),
        lambda: plots.curves(run.curves, ["train_accuracy", "test_accuracy"], folder / "accuracy_curve.svg", title,
                             "accuracy"),
        lambda: fit_plot(folder, run.model, run.data, title),
    )
    for make in (*plots_made, lambda: call_writer(writer, folder, run)):
        if make in plots_made and hurry is not None and hurry():
            continue
        try:
            make()
        except Exception:  # noqa: BLE001 - a failed plot must not lose the run
            pass
    if run.learned:
        (folder / "learned_parameters.json").write_text(json.dumps(run.learned, indent=2), encoding="utf-8")
    if run.data is not None:
        for name, content in run.data.artifacts.items():  # a file-backed dataset's label map, scaler ...
            path = folder / Path(name).name
            path.write_bytes(content) if isinstance(content, bytes) else path.write_text(str(content), encoding="utf-8")
    if run.model is not None:
        import torch

        torch.save({k: v.detach().cpu() for k, v in run.model.state_dict().items()}, folder / "model_state_dict.pt")


def run_yaml(run: RunView) -> str:
    import yaml

    # libyaml's dumper when PyYAML has it: the same text, ~10x faster (each sweep point writes one)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(run.config, Dumper=dumper, sort_keys=False, default_flow_style=None)


def call_writer(writer, folder: Path, run: RunView):
    """An experiment's writer: ``write(folder, run)``, or the 0.1 form ``write(folder, model, data, config)``."""
    if not callable(writer):
        return None
    try:
        arity = len(inspect.signature(writer).parameters)
    except (TypeError, ValueError):
        arity = 2
    if arity >= 4:
        from regfw.config import Config

        return writer(folder, run.model, run.data, Config.from_dict(run.config))
    return writer(folder, run)


def fit_plot(folder: Path, model, data, title: str):
    """A 1-D regression's data and fitted curve."""
    if model is None or data is None or data.task != "regression":
        return None
    if data.x_train.ndim != 2 or data.x_train.shape[1] != 1 or data.y_train.numel() != len(data.y_train):
        return None
    from regfw import plots

    return plots.fit(model, data.x_train, data.y_train, folder / "fit.svg", title)
