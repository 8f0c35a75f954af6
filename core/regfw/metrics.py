"""Metrics beyond the loss. Each returns a count of correct predictions as a tensor, so the
engine can sum over batches on the device and read it back only at log points."""

from __future__ import annotations


def correct(output, target, task: str):
    """Number of correct predictions: logits > 0 for binary, argmax for multiclass."""
    if task == "binary":
        return ((output > 0).to(target.dtype) == target).sum()
    if task == "multiclass":
        return (output.argmax(dim=1) == target).sum()
    raise ValueError(f"accuracy needs a classification task, not {task!r}")
