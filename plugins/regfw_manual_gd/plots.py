"""The document's landscapes: MSE over a grid of w, and the MSE surface over (w, b) in 3D.

Both come from regfw's landscape code (``regfw.landscape``: the batched evaluator over the model's
own parameters, and its drawing), the same that ``regfw landscape RUN_ID`` uses.
"""

from __future__ import annotations

import json
from pathlib import Path

from regfw import ReportsLearnedParameters, RunView

GRID = [round(0.1 * i, 1) for i in range(41)]  # 0.0, 0.1, ..., 4.0
EXERCISE_X = [1.0, 2.0, 3.0]
EXERCISE_Y = [5.0, 8.0, 11.0]  # y = 3x + 2


def _grid(xs, ys, bias: bool, grid):
    """MSE of ŷ = x·w (+ b) over ``grid`` for w (and b): the model's parameters as the axes."""
    import torch

    from regfw.landscape import loss_grid, params_plane
    from regfw_manual_gd.model import ManualLinear

    model = ManualLinear(0.0, 0.0 if bias else None, None)
    x = torch.tensor(xs, dtype=torch.float64).reshape(-1, 1)
    y = torch.tensor(ys, dtype=torch.float64).reshape(-1, 1)
    model = model.double()  # the document computes in Python floats
    axes = [grid, grid] if bias else [grid]
    return loss_grid(model, torch.nn.MSELoss(), x, y, params_plane(model), axes).tolist()


def mse_over_w(xs, ys, grid=GRID) -> list[float]:
    """Exhaustive search: MSE of ŷ = x·w for each w of the grid."""
    return _grid(xs, ys, False, grid)


def mse_over_wb(xs, ys, grid=GRID) -> list[list[float]]:
    """MSE of ŷ = x·w + b, rows over b, columns over w."""
    return _grid(xs, ys, True, grid)


def write_landscapes(folder: Path, run: RunView) -> None:
    """The three artifacts, from the run's training data, trained model and resolved configuration."""
    from regfw.landscape import Landscape
    from regfw.landscape import draw

    folder, model, data = Path(folder), run.model, run.data
    if data is not None and data.x_train.ndim == 2 and data.x_train.shape[1] == 1:
        xs = data.x_train.cpu().flatten().tolist()
        ys = data.y_train.cpu().flatten().tolist()
        mse = mse_over_w(xs, ys)
        best = min(range(len(GRID)), key=mse.__getitem__)
        (folder / "mse_grid_w.json").write_text(json.dumps(
            {"w": GRID, "mse": mse, "best_w": GRID[best], "best_mse": mse[best]}, indent=1), encoding="utf-8")
        learned = model.learned_parameters() if isinstance(model, ReportsLearnedParameters) else {}
        final = [learned["w"]] if "w" in learned and "b" not in learned else None
        final_loss = mse_over_w(xs, ys, final)[0] if final else None
        draw.curve(Landscape("params", ["w"], [GRID], mse, final, final_loss, loss_name="MSE",
                             title=f"MSE of y = x*w over w (minimum at w = {GRID[best]:g})"),
                   folder / "mse_grid_w.svg")

    surface = mse_over_wb(EXERCISE_X, EXERCISE_Y)
    (folder / "mse_surface_wb.json").write_text(json.dumps(
        {"x": EXERCISE_X, "y": EXERCISE_Y, "w": GRID, "b": GRID, "mse[b][w]": surface}), encoding="utf-8")
    draw.surface(Landscape("params", ["w", "b"], [GRID, GRID], surface, None, None, loss_name="MSE",
                           title="MSE of y = x*w + b on y = 3x + 2"), folder / "mse_surface_wb.svg", scale="linear")

    if isinstance(model, ReportsLearnedParameters):
        params = run.config["model"]["params"]
        at = params.get("predict_at")
        if at is not None and "w_init" in params:
            before = params["w_init"] * at + (params.get("b_init", 0.0) if params.get("bias") else 0.0)
            after = model.learned_parameters().get(f"prediction_at_{at:g}")
            (folder / "predictions.json").write_text(json.dumps({"x": at, "before": before, "after": after}, indent=1),
                                                     encoding="utf-8")
