"""The optional parts of the plugin contract, spelled out.

A model may offer any of these methods; regfw checks for each by name (``callable(getattr(...))``),
so a plugin never has to inherit from anything. The Protocols document the exact signatures and
let a plugin author's type checker verify them. An experiment may also add artifacts of its own:
``register(..., artifacts=write)`` with ``write(folder, run)``, where ``run`` is a :class:`RunView`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:  # torch stays unimported
    import torch

    from regfw.data import Data


@runtime_checkable
class ReportsLearnedParameters(Protocol):
    """``learned_parameters()``: named scalars worth logging (``learned.<name>`` metrics and
    ``learned_parameters.json``) instead of the raw parameters of a small model."""

    def learned_parameters(self) -> dict[str, float]: ...


@runtime_checkable
class HasFeatureBasis(Protocol):
    """``feature_basis(x)``: the model is linear in these features (n, k), so regfw logs the
    least-squares optimum of the training loss (``optimum_loss``) and the gap to it (``excess_loss``)."""

    def feature_basis(self, x: "torch.Tensor") -> "torch.Tensor": ...


@runtime_checkable
class HasFormulaGrad(Protocol):
    """``formula_grad(x, y)``: with ``train.grad=formula`` the engine calls it under ``no_grad``
    instead of ``backward()``; it must fill each parameter's ``.grad`` for the optimizer's step."""

    def formula_grad(self, x: "torch.Tensor", y: "torch.Tensor") -> None: ...


@dataclass(frozen=True)
class RunView:
    """A finished (or failed, or interrupted) run as an experiment's ``artifacts`` writer sees it.

    Read-only by convention: writers draw or dump, they do not train."""

    experiment: str
    status: str  # FINISHED | FAILED | KILLED
    config: dict  # the resolved configuration, as config.yaml holds it
    params: dict  # the same, flattened as MLflow params (``optimizer.lr`` ...)
    model: Any  # the trained torch.nn.Module, or None when the run failed before building it
    data: "Data | None"
    curves: dict = field(default_factory=dict)  # metric -> [(epoch, value), ...]
    summary: dict = field(default_factory=dict)  # final_*, best_*, optimum_loss ...
    learned: dict = field(default_factory=dict)


ArtifactsWriter = Callable[[Path, RunView], Any]
"""``write(folder, run)``: put files into ``folder``; regfw logs its contents with the run."""
