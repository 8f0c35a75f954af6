"""The ``fourier`` model: linear in its features, so regfw can report how far it is from its optimum."""

import torch
from torch import nn

SMALL = 16  # report coefficients by name up to this many


class Fourier(nn.Module):
    """y = W [sin(k f x_j), cos(k f x_j)]_{j, k} + b, for k = 1..n_terms and every input j."""

    def __init__(self, in_features, out_features, n_terms=4, base_frequency=1.0):
        super().__init__()
        if in_features is None or out_features is None:
            raise ValueError("fourier needs in_features and out_features (set model.in_features=...)")
        self.in_features, self.n_terms = in_features, n_terms
        # A buffer, not a parameter: it moves with .to(device) and is saved in the state_dict.
        self.register_buffer("frequencies", base_frequency * torch.arange(1, n_terms + 1, dtype=torch.float32))
        self.linear = nn.Linear(2 * n_terms * in_features, out_features)

    def features(self, x):
        angles = x.reshape(len(x), self.in_features, 1) * self.frequencies  # [n, in, k]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=2).reshape(len(x), -1)

    def forward(self, x):
        return self.linear(self.features(x))

    def feature_basis(self, x):
        """The design matrix [features, 1]: regfw solves least squares on it for optimum_loss."""
        phi = self.features(x)
        return torch.cat([phi, torch.ones_like(phi[:, :1])], dim=1)

    def learned_parameters(self):
        """Named coefficients (sin1, cos1, ..., bias) when there is one input and one output."""
        if self.in_features != 1 or self.linear.out_features != 1 or self.linear.weight.numel() > SMALL:
            return {}
        weights = self.linear.weight.detach().flatten().tolist()
        names = [f"sin{k}" for k in range(1, self.n_terms + 1)] + [f"cos{k}" for k in range(1, self.n_terms + 1)]
        return dict(zip(names, weights)) | {"bias": float(self.linear.bias.detach())}
