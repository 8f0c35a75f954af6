"""``regfw run ... --snapshots K``: K copies of the parameters along training, the path a landscape draws.

The engine's ``on_epoch_end`` callback: the parameters at the start (epoch 0) and at K - 1 epochs
evenly spaced up to the last, copied on the device (no host sync in the loop) and written at the
end of the run as one artifact, ``snapshots.pt``: tensors only, loadable with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

from regfw.errors import RegfwError

ARTIFACT = "snapshots.pt"


def snapshot_epochs(count: int, epochs: int) -> list[int]:
    """``count`` epochs from 0 (the initial parameters) to ``epochs``, evenly spaced, without repeats."""
    if count < 2:
        raise RegfwError(f"--snapshots needs at least 2 (the start and the end), got {count}")
    return sorted({round(i * epochs / (count - 1)) for i in range(count)})


class Snapshots:
    """Keeps the parameters of ``state.model`` at :func:`snapshot_epochs`."""

    def __init__(self, count: int, state):
        self.model = state.model
        self.epochs = snapshot_epochs(count, state.config.train["epochs"])
        self.wanted = set(self.epochs) - {0}
        self.taken: list[tuple[int, list]] = [(0, self._copy())]

    def _copy(self) -> list:
        return [p.detach().clone() for p in self.model.parameters()]

    def __call__(self, epoch: int) -> None:
        if epoch in self.wanted:
            self.taken.append((epoch, self._copy()))

    def content(self) -> dict:
        import torch

        names = [name for name, _ in self.model.named_parameters()]
        return {"epochs": torch.tensor([e for e, _ in self.taken], dtype=torch.int64),
                "params": {name: torch.stack([params[i] for _, params in self.taken]).cpu()
                           for i, name in enumerate(names)}}

    def write(self, folder) -> None:
        """``snapshots.pt`` in ``folder`` (the run's artifacts)."""
        import torch
        from pathlib import Path

        torch.save(self.content(), Path(folder) / ARTIFACT)


@dataclass
class Trajectory:
    """Snapshots read back: the epochs and the parameters at each, by name."""

    epochs: list
    params: dict  # name -> (K, *shape) tensor

    def matrix(self, names: list | None = None):
        """(K, D): each snapshot flattened in the order of ``names`` (the model's)."""
        import torch

        names = names or list(self.params)
        return torch.cat([self.params[n].reshape(len(self.epochs), -1) for n in names], dim=1)


def load(path, names: list) -> Trajectory:
    """Read ``snapshots.pt``; a file that does not fit the model's parameters is one line."""
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        epochs = [int(e) for e in saved["epochs"]]
        params = {name: saved["params"][name] for name in names}
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file
        raise RegfwError(f"the run's {ARTIFACT} cannot be read: {type(exc).__name__}: {str(exc)[:120]}") from None
    return Trajectory(epochs, params)
