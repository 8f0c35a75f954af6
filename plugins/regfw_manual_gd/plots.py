"""The document's landscapes: MSE over a grid of w, and the MSE surface over (w, b) in 3D."""

from __future__ import annotations

import json
from pathlib import Path

from regfw import ReportsLearnedParameters, RunView

GRID = [round(0.1 * i, 1) for i in range(41)]  # 0.0, 0.1, ..., 4.0
EXERCISE_X = [1.0, 2.0, 3.0]
EXERCISE_Y = [5.0, 8.0, 11.0]  # y = 3x + 2


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mse_over_w(xs, ys, grid=GRID) -> list[float]:
    """Exhaustive search: MSE of ŷ = x·w for each w of the grid."""
    return [sum((x * w - y) ** 2 for x, y in zip(xs, ys)) / len(xs) for w in grid]


def mse_over_wb(xs, ys, grid=GRID) -> list[list[float]]:
    """MSE of ŷ = x·w + b, rows over b, columns over w."""
    return [[sum((x * w + b - y) ** 2 for x, y in zip(xs, ys)) / len(xs) for w in grid] for b in grid]


def write_landscapes(folder: Path, run: RunView) -> None:
    """The three artifacts, from the run's training data, trained model and resolved configuration."""
    folder, model, data = Path(folder), run.model, run.data
    plt = _pyplot()
    if data is not None and data.x_train.ndim == 2 and data.x_train.shape[1] == 1:
        xs = data.x_train.cpu().flatten().tolist()
        ys = data.y_train.cpu().flatten().tolist()
        mse = mse_over_w(xs, ys)
        best = min(range(len(GRID)), key=mse.__getitem__)
        (folder / "mse_grid_w.json").write_text(json.dumps(
            {"w": GRID, "mse": mse, "best_w": GRID[best], "best_mse": mse[best]}, indent=1), encoding="utf-8")
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(GRID, mse, marker=".")
        ax.set(xlabel="w", ylabel="MSE", title=f"MSE of y = x*w over w (minimum at w = {GRID[best]:g})")
        fig.tight_layout()
        fig.savefig(folder / "mse_grid_w.png", dpi=100)
        plt.close(fig)

    surface = mse_over_wb(EXERCISE_X, EXERCISE_Y)
    (folder / "mse_surface_wb.json").write_text(json.dumps(
        {"x": EXERCISE_X, "y": EXERCISE_Y, "w": GRID, "b": GRID, "mse[b][w]": surface}), encoding="utf-8")
    import numpy as np

    w_grid, b_grid = np.meshgrid(GRID, GRID)
    fig = plt.figure(figsize=(7, 5))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(w_grid, b_grid, np.array(surface), cmap="viridis")
    ax.set(xlabel="w", ylabel="b", zlabel="MSE", title="MSE of y = x*w + b on y = 3x + 2")
    fig.tight_layout()
    fig.savefig(folder / "mse_surface_wb.png", dpi=100)
    plt.close(fig)

    if isinstance(model, ReportsLearnedParameters):
        params = run.config["model"]["params"]
        at = params.get("predict_at")
        if at is not None and "w_init" in params:
            before = params["w_init"] * at + (params.get("b_init", 0.0) if params.get("bias") else 0.0)
            after = model.learned_parameters().get(f"prediction_at_{at:g}")
            (folder / "predictions.json").write_text(json.dumps({"x": at, "before": before, "after": after}, indent=1),
                                                     encoding="utf-8")
