"""The document-000 appendix's 1D-CNN + BiLSTM + attention classifier, with its bugs fixed.

torch is imported at module level here: this module is only imported when the model is built.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

CONV_LAYERS = 3  # the appendix's three Conv1d + ReLU + max-pool blocks


def shortened(length: int, kernel_size: int, stride: int) -> int:
    """Steps left of ``length`` after the conv + max-pool stack (each op: floor((n - k) / s) + 1)."""
    for _ in range(2 * CONV_LAYERS):
        if length < kernel_size:
            return 0
        length = (length - kernel_size) // stride + 1
    return length


def min_length(kernel_size: int, stride: int) -> int:
    """The shortest sequence that still leaves one step for the LSTM.

    Walking back from one step, each op needs ``(n - 1) * stride + kernel_size`` inputs for ``n`` outputs."""
    length = 1
    for _ in range(2 * CONV_LAYERS):
        length = (length - 1) * stride + kernel_size
    return length


class CnnLstmAttention(nn.Module):
    """Three Conv1d (ReLU, max-pool) → bidirectional LSTM → attention pooling over time → Linear.

    Input ``(batch, length, channels)``; output ``(batch, out_features)`` logits.

    What differs from the appendix, and why:
    - It reshaped the LSTM output with the *input's* sequence length, but the convolutions and
      poolings shorten the sequence, so ``view`` failed (or mixed samples). The LSTM output is used
      as it is, ``(batch, shortened length, 2 * hidden)``.
    - It built zero ``h0``/``c0`` on a global ``device`` inside ``forward`` (a NameError unless the
      script defined one); zeros are the LSTM's default initial state, so none are passed.
    - ``bmm(...).squeeze()`` also dropped the batch dimension for a batch of one; here only the
      pooled time dimension is removed, so a batch of one gives ``(1, out_features)``.
    - Kept as the document has it: dropout on the attention weights *after* the softmax (training
      only), so in training the weights no longer sum to one; at evaluation they do.
    - ``nn.LSTM``'s ``dropout`` acts only between stacked layers: with one layer it is not passed
      (torch warns that it would do nothing).
    """

    def __init__(self, in_channels: int, hidden: int, out_features: int, num_layers: int,
                 dropout: float, kernel_size: int, stride: int):
        super().__init__()
        self.dropout, self.kernel_size, self.stride = dropout, kernel_size, stride
        widths = [in_channels] + [hidden] * CONV_LAYERS
        self.conv_layers = nn.ModuleList(
            nn.Conv1d(a, b, kernel_size=kernel_size, stride=stride) for a, b in zip(widths, widths[1:]))
        self.lstm = nn.LSTM(hidden, hidden, num_layers=num_layers, bidirectional=True, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.attention_layer = nn.Linear(2 * hidden, 1, bias=False)
        self.output_layer = nn.Linear(2 * hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"expected input (batch, length, channels), got shape {tuple(x.shape)}")
        if shortened(x.shape[1], self.kernel_size, self.stride) < 1:
            need = min_length(self.kernel_size, self.stride)
            raise ValueError(f"sequences of {x.shape[1]} steps are too short: at least {need} needed")
        h = x.transpose(1, 2)  # Conv1d wants (batch, channels, length)
        for conv in self.conv_layers:
            h = F.max_pool1d(F.relu(conv(h)), kernel_size=self.kernel_size, stride=self.stride)
        out, _ = self.lstm(h.transpose(1, 2))  # (batch, steps, 2 * hidden)
        weights = F.softmax(self.attention_layer(out), dim=1).transpose(1, 2)  # (batch, 1, steps)
        weights = F.dropout(weights, p=self.dropout, training=self.training)
        pooled = torch.bmm(weights, out).squeeze(1)  # only the pooled time dim: a batch of one stays
        return self.output_layer(pooled)
