"""The ``mlp`` model's module class (imports torch: loaded only when an mlp is built)."""

import torch.nn as nn


class FlatMLP(nn.Sequential):
    """nn.Sequential that flattens each sample first, so sequences (batch, length, channels) fit too.

    A subclass rather than a leading nn.Flatten: the layers keep their indices, so state_dict keys
    (and checkpoints of earlier mlp runs) stay as they were; 2-D input goes through unchanged."""

    def forward(self, x):
        return super().forward(x.flatten(1) if x.ndim > 2 else x)
