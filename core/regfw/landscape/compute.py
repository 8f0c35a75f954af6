"""A landscape from a built model, its loss and data: the grid, the path, the marked points."""

from __future__ import annotations

from dataclasses import dataclass, field

import math

from regfw.errors import RegfwError
from regfw.landscape.plane import Plane, make_plane

PAD = 0.2  # of the path's extent, on each side


@dataclass
class Landscape:
    kind: str
    labels: list
    axes: list  # one or two lists of coordinates
    values: list  # the loss: [v][u] for a plane, [u] for a line
    final: list | None  # the final parameters' coordinates (None: no point to mark)
    final_loss: float | None
    loss_name: str = "training loss"
    title: str = ""
    note: str = ""
    path: dict | None = None  # epochs, coords, loss (on the plane, at the projected points)
    optimum: dict | None = None  # coords, loss, off_plane (distance of the true point from the plane)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain JSON: a non-finite loss (an overflow far out on the grid) becomes null."""
        out = {k: v for k, v in self.__dict__.items() if k != "extra"} | self.extra
        return _finite(out)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def default_axes(plane: Plane, path_coords, span: float | None, grid: int) -> list:
    """``span`` around the final point; without it: the path with a margin (pca, params), the
    parameters' own scale (params: ±max(1, |θ|), so w* = 2 gives document 002's 0..4), or ±1 (random)."""
    import torch

    ranges = []
    for i, c in enumerate(plane.center):
        if span is not None:
            lo, hi = c - span, c + span
        else:
            own = max(1.0, max(abs(v) for v in plane.center)) if plane.kind == "params" else 1.0
            lo, hi = c - own, c + own
            if path_coords is not None and len(path_coords) and plane.kind != "random":
                p_lo, p_hi = float(path_coords[:, i].min()), float(path_coords[:, i].max())
                pad = PAD * max(p_hi - p_lo, 1e-12)
                p_lo, p_hi = min(p_lo, c) - pad, max(p_hi, c) + pad
                lo, hi = (min(lo, p_lo), max(hi, p_hi)) if plane.kind == "params" else (p_lo, p_hi)
        ranges.append(torch.linspace(lo, hi, grid, dtype=torch.float64))
    if plane.kind == "pca" and span is None and len(ranges) == 2:
        # A valley is seen across its floor: the narrow axis gets at least a quarter of the wide one's width.
        widths = [float(r[-1] - r[0]) for r in ranges]
        narrow = min(range(2), key=widths.__getitem__)
        if widths[narrow] < widths[1 - narrow] / 4:
            half = widths[1 - narrow] / 8
            mid = float(ranges[narrow][0] + ranges[narrow][-1]) / 2
            ranges[narrow] = torch.linspace(mid - half, mid + half, grid, dtype=torch.float64)
    return ranges


def least_squares_point(model, loss_fn, data):
    """The least-squares optimum as a parameter vector, for a model whose parameters are the
    coefficients of its ``feature_basis`` (checked on the data) and an MSE loss; else None."""
    import torch

    basis = getattr(model, "feature_basis", None)
    if not callable(basis) or type(loss_fn).__name__ != "MSELoss" or data.task != "regression":
        return None
    params = list(model.parameters())
    with torch.no_grad():
        design = basis(data.x_train).double()
        target = data.y_train.double().reshape(len(design), -1)
        if target.shape[1] != 1 or design.shape[1] != sum(p.numel() for p in params):
            return None
        solution = torch.linalg.lstsq(design, target).solution.reshape(-1)
        saved = [p.detach().clone() for p in params]
        try:
            _set(params, solution)
            out = model(data.x_train).double().reshape(-1)
            fits = torch.allclose(out, (design @ solution), rtol=1e-4, atol=1e-5 * float(target.abs().max() + 1))
            loss = float(loss_fn(model(data.x_train), data.y_train))
        finally:
            for p, s in zip(params, saved):
                p.copy_(s)
    return (solution, loss) if fits else None


def _set(params, flat) -> None:
    i = 0
    for p in params:
        p.copy_(flat[i:i + p.numel()].reshape(p.shape).to(p.dtype))
        i += p.numel()


def compute(model, loss_fn, data, *, directions: str | None = None, trajectory=None, grid: int = 41,
            span: float | None = None, one_d: bool = False, seed: int = 0, title: str = "") -> Landscape:
    """The training loss around ``model``'s current parameters (see :mod:`regfw.landscape`)."""
    import time

    import torch

    from regfw.landscape.evaluate import loss_grid, losses_at

    plane = make_plane(directions, model, trajectory, seed)
    if one_d:
        plane = plane.line()
    x, y = data.x_train, data.y_train
    path_coords, path = None, None
    if trajectory is not None:
        names = plane.names
        matrix = trajectory.matrix(names)
        keep = torch.isfinite(matrix).all(dim=1)
        path_coords = plane.project(matrix[keep])
        epochs = [e for e, k in zip(trajectory.epochs, keep.tolist()) if k]
        path = {"epochs": epochs, "coords": path_coords.tolist()}
    axes = default_axes(plane, path_coords, span, grid)
    started = time.perf_counter()
    notes = [plane.note] if plane.note else []
    values = loss_grid(model, loss_fn, x, y, plane, axes, notes=notes)
    seconds = time.perf_counter() - started
    final = torch.tensor([plane.center], dtype=torch.float64)
    final_loss = float(losses_at(model, loss_fn, x, y, plane, final)[0])
    if not math.isfinite(final_loss):
        raise RegfwError(f"the final parameters give a loss of {final_loss}: nothing to draw around (did the run diverge?)")
    if path is not None:
        path["loss"] = losses_at(model, loss_fn, x, y, plane, path_coords).tolist()
    optimum = None
    found = least_squares_point(model, loss_fn, data)
    if found is not None:
        vector, loss = found
        coords = plane.project(vector[None].to(torch.float64))
        off = float((plane.at(coords)[0].double() - vector).norm())
        optimum = {"coords": coords[0].tolist(), "loss": loss, "off_plane": off}
    return Landscape(plane.kind, plane.labels, [a.tolist() for a in axes], values.tolist(), plane.center,
                     final_loss, title=title, note="; ".join(notes), path=path, optimum=optimum, seconds=seconds,
                     extra={"grid": grid})
