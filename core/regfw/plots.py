"""Plots. A run's own charts (curves, the 1-D fit) are SVG drawn by regfw.svg: every run writes
them, and matplotlib cost more than the run itself. The rest (``compare --plot``, landscapes)
uses matplotlib, imported on first use with the Agg backend."""

from __future__ import annotations

from pathlib import Path

LOSS_CURVES = ("train_loss", "test_loss")
ACCURACY_CURVES = ("train_accuracy", "test_accuracy")
MARGINS = {"left": 0.17, "right": 0.97, "bottom": 0.12, "top": 0.92}  # room for a 6x4 plot's labels


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(history: dict, names: list[str], path: Path, title: str, ylabel: str, log_y: bool = False) -> Path | None:
    """One line per metric in ``names`` against epoch (train and test together), as SVG;
    ``history`` maps a metric to its ``[(epoch, value), ...]``. ``log_y`` applies when every value
    is positive."""
    from regfw import svg

    present = [n for n in names if history.get(n)]
    if not present:
        return None
    lines = [svg.Series(name, *zip(*history[name])) for name in present]
    path.write_text(svg.chart(lines, title, "epoch", ylabel, log_y=log_y, integer_x=True), encoding="utf-8")
    return path


def fit(model, x, y, path: Path, title: str) -> Path:
    """A 1-D regression as SVG: the data as dots, the fitted curve as a line over the data's range."""
    import torch

    from regfw import svg

    model.eval()
    with torch.no_grad():
        grid = torch.linspace(float(x.min()), float(x.max()), 200, device=x.device, dtype=x.dtype).unsqueeze(1)
        pred = model(grid)
    drawn = [svg.Series("data", x.cpu().flatten().tolist(), y.cpu().flatten().tolist(), dots=True, color=svg.PALETTE[3]),
             svg.Series("fit", grid.cpu().flatten().tolist(), pred.cpu().flatten().tolist(), color=svg.PALETTE[0])]
    path.write_text(svg.chart(drawn, title, "x", "y"), encoding="utf-8")
    return path


def plot_file(path: str | Path) -> Path:
    """Where ``--plot PATH`` really writes: into a folder as compare.png, and with ``.png`` added
    to a name without a suffix (matplotlib would add it silently, and the message named PATH)."""
    path = Path(path)
    if path.is_dir():
        return path / "compare.png"
    return path if path.suffix else path.with_name(path.name + ".png")


def overlay(data: dict, names: dict, path: str | Path) -> list[str]:
    """Loss curves of several runs in one panel (train solid, test dashed); accuracy in a second
    panel when any run has it. ``data``: ``{run_id: {metric: [(step, value), ...]}}`` in the order
    to draw, ``names``: a legend label per run id. Returns the panels drawn."""
    import math

    from regfw.errors import RegfwError

    path = Path(path)
    if not path.parent.exists():
        raise RegfwError(f"cannot write {path}: folder {path.parent} does not exist")
    rows = list(data)
    panels = [("loss", LOSS_CURVES)]
    if any(data[r].get(n) for r in rows for n in ACCURACY_CURVES):
        panels.append(("accuracy", ACCURACY_CURVES))
    if not any(data[r].get(n) for r in rows for n in LOSS_CURVES):
        raise RegfwError("none of these runs has a loss curve to plot")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for ax, (panel, metrics) in zip(axes[0], panels):
        positive = True
        for i, row in enumerate(rows):
            for metric, style in zip(metrics, ("-", "--")):
                points = data[row].get(metric)
                if not points:
                    continue
                steps, values = zip(*points)
                positive = positive and all(v > 0 for v in values if math.isfinite(v))
                split = metric.split("_", 1)[0]
                ax.plot(steps, values, style, color=colors[i % len(colors)], label=f"{names[row]} ({split})")
        if panel == "loss" and positive:
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=panel, title=f"{panel}: {len(rows)} runs")
        ax.legend(fontsize="small")
    fig.subplots_adjust(**MARGINS)  # fixed margins: tight_layout measured every text, ~0.3 s a plot
    try:
        fig.savefig(path, dpi=100)
    except (OSError, ValueError) as exc:
        from regfw.errors import squeeze

        raise RegfwError(f"cannot write {path}: {squeeze(str(exc), 160)}") from None
    finally:
        plt.close(fig)
    return [panel for panel, _ in panels]
