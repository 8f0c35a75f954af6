"""A run's state in one object, and its serialisation: what a checkpoint holds.

Everything the next epoch depends on: the model's and the optimizer's state, every random number
generator the loop draws from (torch's CPU generator, the shuffle generator, CUDA's when used,
Python's and NumPy's), the metric curves so far and the configuration. The engine trains a
:class:`RunState`, the checkpointer saves it, and a resume restores it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from regfw.recorder import History
from regfw.errors import RegfwError, squeeze

FORMAT = 1


@dataclass
class RunState:
    config: Any  # regfw.config.Config
    device: Any  # torch.device
    data: Any  # regfw.Data, on the device
    model: Any
    loss_fn: Any
    optimizer: Any
    generator: Any  # torch.Generator of the shuffle order
    history: History = field(default_factory=History)

    def snapshot(self, epoch: int, run_id: str | None, seconds: float) -> dict:
        """The checkpoint: tensors and plain data only, loadable with ``weights_only=True``."""
        curves = {name: [[int(e), float(v)] for e, v in points] for name, points in self.history.curves.items()}
        return {
            "format": FORMAT,
            "epoch": epoch,
            "run_id": run_id,
            "config": self.config.to_dict(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.generator, self.device),
            "history": curves,
            "seconds": float(seconds),
            "saved_at": time.time(),
        }

    def restore(self, snapshot: dict, run_id: str) -> int:
        """Load ``snapshot`` into the freshly built parts; return the first epoch still to train."""
        try:
            self.model.load_state_dict(snapshot["model"])
            self.optimizer.load_state_dict(snapshot["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise RegfwError(f"checkpoint of run {run_id} does not fit the model built now: "
                             f"{squeeze(str(exc), 160)}") from None
        restore_rng(snapshot["rng"], self.generator, self.device)
        for name, points in snapshot["history"].items():
            self.history.curves[name] = [(int(e), float(v)) for e, v in points]
        self.history.epochs_done = int(snapshot["epoch"])
        return self.history.epochs_done + 1


def load_snapshot(path) -> dict:
    """Read a checkpoint file: tensors and plain data only (no pickled code runs), on the CPU."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT or "epoch" not in state:
        raise ValueError("not a regfw checkpoint")
    return state


def _is_cuda(device) -> bool:
    return getattr(device, "type", str(device)) == "cuda"


def rng_state(generator, device) -> dict:
    """Every generator the training loop may draw from, as tensors and plain numbers."""
    import torch

    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "shuffle": generator.get_state(),
             "python": [version, list(internal), gauss]}
    if _is_cuda(device) and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy

        name, keys, pos, has_gauss, cached = numpy.random.get_state()
        state["numpy"] = {"keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached": float(cached)}
    except ImportError:  # pragma: no cover - numpy comes with torch's usual installs
        pass
    return state


def restore_rng(state: dict, generator, device) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and _is_cuda(device) and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        try:
            import numpy
        except ImportError:  # pragma: no cover
            return
        saved = state["numpy"]
        numpy.random.set_state(("MT19937", saved["keys"].numpy().astype("uint32"), saved["pos"],
                                saved["has_gauss"], saved["cached"]))
