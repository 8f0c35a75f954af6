"""Write small MNIST-format IDX files for tests: torchvision's real MNIST/FashionMNIST classes read them.

Images are 28×28 uint8. Class k lights a 4×4 block at its own place on a noisy background, so a small
model learns to tell the classes apart in a few epochs.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: torch.Tensor) -> bytes:
    """IDX encoding of a uint8 tensor: magic (0, 0, 0x08 = ubyte, ndim), big-endian sizes, data."""
    assert array.dtype == torch.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.contiguous().numpy().tobytes()


def images_for(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = len(labels)
    images = torch.randint(0, 60, (n, 28, 28), generator=generator, dtype=torch.uint8)
    for i, k in enumerate(labels.tolist()):
        row, col = 2 + 6 * (k // 4), 2 + 6 * (k % 4)
        images[i, row:row + 4, col:col + 4] = 250
    return images


def write_idx(folder: Path, *, n_train: int = 120, n_test: int = 40, gz: bool = True, layout: str | None = "MNIST",
              seed: int = 0) -> Path:
    """Write the four files into ``folder/<layout>/raw`` (torchvision's layout) or ``folder`` when
    ``layout`` is None; ``.gz`` when ``gz``. Returns ``folder`` (the dataset.root to use)."""
    generator = torch.Generator().manual_seed(seed)
    place = Path(folder) / layout / "raw" if layout else Path(folder)
    place.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (torch.arange(n) % 10).to(torch.uint8)
        labels = labels[torch.randperm(n, generator=generator)]
        arrays[f"{split}-images-idx3-ubyte"] = images_for(labels, generator)
        arrays[f"{split}-labels-idx1-ubyte"] = labels
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (place / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (place / name).write_bytes(data)
    return Path(folder)
