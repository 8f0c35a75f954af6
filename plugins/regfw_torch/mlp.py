"""The ``mlp`` model's module class (imports torch: loaded only when an mlp is built)."""

import torch.nn as nn


class FlatMLP(nn.Sequential):
    """nn.Sequential that flattens each sample first, so sequences (batch, length, channels) fit too.

    A subclass rather than a leading nn.Flatten: the layers keep their indices, so state_dict keys
    (and checkpoints of earlier mlp runs) stay as they were; 2-D input goes through unchanged."""

    def forward(self, x):
        # Flatten only what is not already a row of features: a stack of N models' batches
        # (N, batch, features), as a vectorized sweep feeds it, goes through as it is.
        flat = x.ndim > 2 and x.shape[-1] != self[0].in_features
        return super().forward(x.flatten(1) if flat else x)
