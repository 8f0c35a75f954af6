"""What a run reports at its end: summary metrics, learned parameters, the least-squares optimum."""

from __future__ import annotations

from regfw.data import Data
from regfw.recorder import History, float32_value

SMALL_MODEL = 16  # at most this many scalars: the learned parameters are logged and printed


def learned_parameters(model) -> dict:
    """The model's own report if it has one (``ReportsLearnedParameters``), else its
    parameters when the model is small."""
    import torch

    if callable(getattr(model, "learned_parameters", None)):
        with torch.no_grad():  # a plugin's float(self.weight) must not warn about requires_grad
            return {k: _value(v) for k, v in model.learned_parameters().items()}

    params = list(model.named_parameters())
    if sum(p.numel() for _, p in params) > SMALL_MODEL:
        return {}
    out = {}
    for name, p in params:
        values = p.detach().cpu().flatten().tolist()
        if p.dtype != torch.float64:  # float32 (or narrower): no float64 noise in the store
            values = [float32_value(v) for v in values]
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


def _value(value) -> float:
    """A reported value: a float32 tensor's rounded to what float32 holds, anything else as is."""
    dtype = getattr(value, "dtype", None)
    number = float(value)
    if dtype is not None and str(dtype) != "torch.float64":
        return float32_value(number)
    return number


def excess(final: float, optimum: float) -> float:
    """``final - optimum``, rounded to the absolute precision of ``final`` (a float32 value, 7
    significant digits): 0.0101234 - 0.0101233... is 1e-9 at best, not 1.4213e-09."""
    import math

    diff = final - optimum
    if not math.isfinite(diff) or final == 0:
        return diff
    places = 6 - math.floor(math.log10(abs(final)))
    return round(diff, places) + 0.0  # + 0.0: no -0.0


def unit_factor(loss_fn, scale: float | None) -> float | None:
    """What turns a loss on a target divided by ``scale`` back into the target's own units: scale²
    for a mean squared error, scale for a mean absolute error; None for any other loss (a Huber or
    cross-entropy loss does not rescale by a factor)."""
    import torch

    if scale is None or getattr(loss_fn, "reduction", None) != "mean":
        return None
    if type(loss_fn) is torch.nn.MSELoss:
        return scale * scale
    if type(loss_fn) is torch.nn.L1Loss:
        return scale
    return None


def summarise(history: History, seconds: float, model=None, data: Data | None = None,
              loss_fn=None) -> tuple[dict, dict]:
    """``(summary, learned)``: final and best of every curve, the training time, and for a built
    model its learned parameters and, where it applies, the optimum and the excess over it. A
    standardized regression target (``data.target_scale``) adds the final losses in its own units."""
    summary = {f"final_{k}": v for k, v in history.final().items()}
    factor = unit_factor(loss_fn, data.target_scale) if data is not None else None
    if factor is not None:
        summary |= {f"final_{k}_in_target_units": float32_value(summary[f"final_{k}"] * factor)
                    for k in ("train_loss", "test_loss") if f"final_{k}" in summary}
    summary |= {f"best_{k}": v for k, v in history.best().items()}
    summary["train_seconds"] = round(seconds, 3)  # a wall-clock time: milliseconds are its precision
    learned: dict = {}
    if model is not None:
        try:
            learned = learned_parameters(model)
            best = optimum_loss(model, data) if data is not None else None
            if best is not None:
                summary["optimum_loss"] = best
                if "final_train_loss" in summary:
                    summary["excess_loss"] = excess(summary["final_train_loss"], best)
        except Exception:  # noqa: BLE001 - a summary is a bonus, the status is not
            pass
    return summary, learned


def metric_rows(summary: dict, learned: dict, step: int) -> list[tuple[str, float, int]]:
    """Summary and learned values as ``(key, value, step)`` metric rows."""
    rows = [(k, v, step) for k, v in summary.items()]
    # MLflow metric names allow no brackets: weight[0] is logged as learned.weight.0
    rows += [(f"learned.{k}".replace("[", ".").replace("]", ""), v, step) for k, v in learned.items()]
    return rows
