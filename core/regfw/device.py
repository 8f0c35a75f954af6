"""Pick the torch device a run asks for, or fail in one line when it is not there."""

from __future__ import annotations

import platform

from regfw.errors import RegfwError


def resolve_device(spec: str):
    """``auto`` → CUDA, else MPS, else CPU; an explicit device must exist."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RegfwError(f"device '{spec}' is not available: torch sees no CUDA device here; use --device cpu or auto")
        device = torch.device(spec)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise RegfwError(f"device '{spec}' is not available: there are {count} CUDA device(s), cuda:0..cuda:{count - 1}")
        return device
    if spec == "mps" and not mps_ok:
        raise RegfwError("device 'mps' is not available on this machine; use --device cpu or auto")
    return torch.device(spec)


def device_name(device) -> str:
    """A human name for the device, recorded as a tag (e.g. the GPU model)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return platform.processor() or platform.machine() or "cpu"


_TORCH_DEFAULT_THREADS: list[int] = []  # torch's own choice, read before regfw first changes it


def use_threads(threads: int | None) -> None:
    """``train.threads`` (``--threads N``): torch's intra-op CPU threads for this run; None keeps
    torch's default (one per core). Process-wide, so each run of a sweep sets its own."""
    import torch

    if not _TORCH_DEFAULT_THREADS:
        _TORCH_DEFAULT_THREADS.append(torch.get_num_threads())
    wanted = threads or _TORCH_DEFAULT_THREADS[0]
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
