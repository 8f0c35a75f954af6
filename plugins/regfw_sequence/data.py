"""A burst of sine at a random position in noise: which of a few periods does it have?"""

from __future__ import annotations

import math

import torch

from regfw import Data, RegfwError


def periods(n_classes: int, min_period: float, max_period: float) -> torch.Tensor:
    """Steps per cycle of each class, evenly spaced."""
    return torch.linspace(min_period, max_period, n_classes)


def sine_bursts(generator, length, channels, n_classes, n_train, n_test, min_period, max_period, burst, noise):
    if max_period <= min_period:
        raise RegfwError(f"dataset.max_period ({max_period}) must be larger than dataset.min_period ({min_period})")
    burst = length if burst is None else min(burst, length)  # a short sequence is all burst
    n = n_train + n_test
    labels = torch.randint(n_classes, (n,), generator=generator)
    period = periods(n_classes, min_period, max_period)[labels].view(n, 1, 1)
    # The random shift: a phase per sample and channel, and where the burst starts.
    phase = 2 * math.pi * torch.rand(n, 1, channels, generator=generator)
    start = torch.randint(length - burst + 1, (n, 1, 1), generator=generator)
    t = torch.arange(length, dtype=torch.float32).view(1, length, 1)
    inside = (t >= start) & (t < start + burst)
    x = torch.sin(2 * math.pi * t / period + phase) * inside
    x = x + noise * torch.randn(n, length, channels, generator=generator)
    return Data(x[:n_train], labels[:n_train], x[n_train:], labels[n_train:], task="multiclass")
