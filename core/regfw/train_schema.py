"""The training settings (``train.<key>``): one schema, read by the registry (an experiment's
``train={...}``) and by the configuration (``--set train.epochs=...``)."""

from __future__ import annotations

from regfw.params import Param

METRICS = ("accuracy",)

TRAIN_SCHEMA: dict[str, Param] = {
    "epochs": Param(1, type=int, min=1, help="passes over the training data"),
    "batch_size": Param("full", type=int, min=1, literals=("full",), help="samples per step, or 'full'"),
    "shuffle": Param(True, help="reshuffle mini-batches every epoch"),
    "log_every": Param(None, type=int, min=1, help="record metrics every N epochs (default: ~1000 points)"),
    "metrics": Param([], type=list, item=str, help=f"extra metrics: {', '.join(METRICS)}"),
    "threads": Param(None, type=int, min=1, dtype="int32", help="CPU threads torch uses (default: torch's own, one per core)"),
    "grad": Param("autograd", choices=("autograd", "formula"), help="'formula': the model computes its own gradients"),
}
TRAIN_KEYS = tuple(TRAIN_SCHEMA)
