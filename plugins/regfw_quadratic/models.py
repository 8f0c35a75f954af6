"""The quadratic models, kept apart so importing the plugin does not import torch."""

import torch
from torch import nn

from regfw.errors import RegfwError


def check_one_d(name, in_features, out_features):
    for key, value in (("in_features", in_features), ("out_features", out_features)):
        if value not in (None, 1):
            raise RegfwError(f"model '{name}' is one-dimensional: {key} must be 1, got {value} "
                             f"(use it with a 1-D dataset such as quadratic-1d or linear-1d)")


def quadratic_basis(x: torch.Tensor) -> torch.Tensor:
    """[x², x, 1] for a (n, 1) input: the design matrix of the quadratics."""
    return torch.cat([x * x, x, torch.ones_like(x)], dim=1)


class Quadratic(nn.Module):
    """a·z² + b·z + c with z = (x - center) / scale and a, b, c three (1, 1) parameters drawn from
    N(0, init_std). With the defaults (center 0, scale 1) z is x, as in the document.

    Scaling changes only the coordinates the optimizer walks in, not the function class (a
    quadratic in z is a quadratic in x), so ``feature_basis`` and the optimum stay those of x;
    ``learned_parameters`` reports the coefficients of x in every case, comparable across scalings."""

    def __init__(self, init_std: float = 1.0, center: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.a = nn.Parameter(torch.randn(1, 1) * init_std)
        self.b = nn.Parameter(torch.randn(1, 1) * init_std)
        self.c = nn.Parameter(torch.randn(1, 1) * init_std)
        self.center, self.scale = float(center), float(scale)
        self.scaled = self.center != 0.0 or self.scale != 1.0  # the document's model: no extra ops per step

    def forward(self, x):
        if self.scaled:
            x = (x - self.center) / self.scale
        return self.a * x * x + self.b * x + self.c

    def learned_parameters(self) -> dict:
        a, b, c = self.a.item(), self.b.item(), self.c.item()
        if not self.scaled:
            return {"a": a, "b": b, "c": c}
        # a((x - m)/s)² + b(x - m)/s + c, expanded in powers of x.
        m, s = self.center, self.scale
        return {"a": a / s**2, "b": b / s - 2 * a * m / s**2, "c": a * m**2 / s**2 - b * m / s + c}

    def feature_basis(self, x):
        return quadratic_basis(x)


class LinearProduct(nn.Module):
    """(w1·x + b1)(w2·x + b2) = linear1(x) * linear2(x), two ``nn.Linear(1, 1)``."""

    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(1, 1)
        self.linear2 = nn.Linear(1, 1)

    def forward(self, x):
        return self.linear1(x) * self.linear2(x)

    def learned_parameters(self) -> dict:
        w1, b1 = self.linear1.weight.item(), self.linear1.bias.item()
        w2, b2 = self.linear2.weight.item(), self.linear2.bias.item()
        # The expansion: (w1 x + b1)(w2 x + b2) = w1 w2 x² + (w1 b2 + w2 b1) x + b1 b2.
        return {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "a": w1 * w2, "b": w1 * b2 + w2 * b1, "c": b1 * b2}

    def feature_basis(self, x):
        return quadratic_basis(x)
