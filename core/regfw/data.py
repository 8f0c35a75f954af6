"""In-memory datasets and the batching regfw uses instead of a per-sample DataLoader.

A dataset factory returns :class:`Data`: whole tensors. The engine moves them to the device once
and cuts batches by slicing a shuffled copy, which costs one gather per epoch instead of a
Python call and a collate per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: importing regfw.data stays cheap
    import torch

TASKS = ("regression", "binary", "multiclass")


@dataclass
class Data:
    """Train (and optionally test) tensors with the kind of target they hold."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    task: str = "regression"
    # What a file-backed dataset tells the run about itself; the runner records all three.
    tags: dict = field(default_factory=dict)  # run tags, e.g. {"regfw.data.file": "houses.csv"}
    artifacts: dict = field(default_factory=dict)  # file name -> str or bytes, logged with the run
    source: dict | None = None  # MLflow dataset input: {"name", "digest", "source", "profile"?, "schema"?}
    # A regression target standardized by the dataset: its std, so a run also reports the loss in
    # the target's own units (final_*_loss_in_target_units, for MSE and L1). None: as it is.
    target_scale: float | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if len(self.x_train) != len(self.y_train):
            raise ValueError(f"x_train has {len(self.x_train)} rows but y_train has {len(self.y_train)}")
        if (self.x_test is None) != (self.y_test is None):
            raise ValueError("give both x_test and y_test, or neither")

    @property
    def has_test(self) -> bool:
        return self.x_test is not None

    def to(self, device) -> "Data":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return replace(self, x_train=move(self.x_train), y_train=move(self.y_train),
                       x_test=move(self.x_test), y_test=move(self.y_test))


def shuffled(x, y, generator, out=None):
    """One permutation per epoch, drawn on the CPU so CPU and CUDA runs see the same order.

    ``out=(xs, ys)`` from the previous epoch is refilled in place: a fresh copy of a large dataset
    every epoch costs more in page faults than in copying (about 0.4 s for MNIST's 188 MB on CPU).
    """
    import torch

    perm = torch.randperm(len(x), generator=generator).to(x.device, non_blocking=True)
    if out is None:
        return x.index_select(0, perm), y.index_select(0, perm)
    torch.index_select(x, 0, perm, out=out[0])
    torch.index_select(y, 0, perm, out=out[1])
    return out
