"""ŷ = x·w (+ b) with the gradient of the mean squared error written out by hand."""

import torch
from torch import nn


class ManualLinear(nn.Module):
    """A one-weight line whose ``formula_grad`` replaces autograd.

    For the cost L = mean((x·w + b − y)²):
    dL/dw = mean(2x(x·w + b − y)) and dL/db = mean(2(x·w + b − y)).
    """

    def __init__(self, w_init: float = 1.0, b_init: float | None = None, predict_at: float | None = 4.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w_init)))
        self.b = nn.Parameter(torch.tensor(float(b_init))) if b_init is not None else None
        self.predict_at = predict_at

    def forward(self, x):
        out = x * self.w
        return out + self.b if self.b is not None else out

    @torch.no_grad()
    def formula_grad(self, x, y):
        """Write dL/dw (and dL/db) of the batch's mean squared error into ``.grad``."""
        residual = self.forward(x) - y.reshape(x.shape)
        self.w.grad = (2 * x * residual).mean().reshape(self.w.shape)
        if self.b is not None:
            self.b.grad = (2 * residual).mean().reshape(self.b.shape)

    def learned_parameters(self) -> dict:
        out = {"w": self.w.item()}
        if self.b is not None:
            out["b"] = self.b.item()
        if self.predict_at is not None:
            out[f"prediction_at_{self.predict_at:g}"] = self.w.item() * self.predict_at + (
                self.b.item() if self.b is not None else 0.0)
        return out

    def feature_basis(self, x):
        return torch.cat([x, torch.ones_like(x)], dim=1) if self.b is not None else x
