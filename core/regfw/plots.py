"""PNG plots logged as run artifacts. matplotlib is imported here only, with the Agg backend."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(history, names: list[str], path: Path, title: str, ylabel: str, log_y: bool = False) -> Path | None:
    """One line per metric in ``names`` against epoch (train and test together)."""
    present = [n for n in names if history.curves.get(n)]
    if not present:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in present:
        epochs, values = zip(*history.curves[name])
        ax.plot(epochs, values, label=name)
    if log_y and all(v > 0 for n in present for _, v in history.curves[n]):
        ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def fit(model, x, y, path: Path, title: str) -> Path:
    """A 1-D regression: the data as dots, the fitted curve as a line over the data's range."""
    import torch

    plt = _pyplot()
    model.eval()
    with torch.no_grad():
        grid = torch.linspace(float(x.min()), float(x.max()), 200, device=x.device, dtype=x.dtype).unsqueeze(1)
        pred = model(grid)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(x.cpu().flatten().numpy(), y.cpu().flatten().numpy(), s=10, c="tab:red", label="data")
    ax.plot(grid.cpu().flatten().numpy(), pred.cpu().flatten().numpy(), c="tab:blue", label="fit")
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
