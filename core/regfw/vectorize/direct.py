"""The stacked forward without vmap, for models whose operations already broadcast over the points.

vmap's bookkeeping (wrapping every input, flattening and unflattening pytrees) costs about
0.3 ms a call, as much as a tiny model's whole step. Many models need no transform at all: with
each parameter given a leading dimension of N, elementwise arithmetic (``a*x*x + b*x + c``)
already computes the N models at once, and ``nn.Linear`` does once it multiplies per point
(``torch.baddbmm``). This module builds that call on a template copy of the model, and a
per-point loss for torch's own losses (``reduction="none"``, then the mean over each point's
elements). :class:`regfw.vectorize.stack.Stack` tries it once against the vmapped call on the
first batch and keeps vmap on any difference in shape or value - a reshape that assumes a batch
dimension, a reduction over dim 0, a layer with no per-point form.
"""

from __future__ import annotations

import copy
import types


def _linear_forward(self, x):
    """nn.Linear with weight (N, out, in) and bias (N, out) on x (N, ..., in)."""
    import torch

    weight = self.weight.transpose(1, 2)
    if x.dim() == 3:
        return torch.bmm(x, weight) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), x, weight)
    out = torch.matmul(x.reshape(x.shape[0], -1, x.shape[-1]), weight).reshape(*x.shape[:-1], weight.shape[-1])
    if self.bias is not None:
        out = out + self.bias.reshape(x.shape[0], *([1] * (x.dim() - 2)), -1)
    return out


def template(model):
    """A meta-device copy of ``model`` whose nn.Linear layers multiply per point, or None when it
    holds another torch layer with parameters (convolutions, recurrent layers, norms, embeddings:
    they have no per-point form here, so vmap stays)."""
    from torch import nn

    base = copy.deepcopy(model).to("meta")
    for module in base.modules():
        if isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward:  # subclasses too
            module.forward = types.MethodType(_linear_forward, module)
        elif module._parameters and type(module).__module__.startswith("torch.nn"):
            return None
    return base


def per_point_loss(loss_fn):
    """``losses(out, y) -> (N,)`` for torch's own losses with reduction "mean", or None."""
    from torch import nn

    known = (nn.MSELoss, nn.L1Loss, nn.HuberLoss, nn.SmoothL1Loss, nn.BCEWithLogitsLoss, nn.BCELoss,
             nn.CrossEntropyLoss)
    if type(loss_fn) not in known or getattr(loss_fn, "reduction", None) != "mean":
        return None
    classes = type(loss_fn) is nn.CrossEntropyLoss
    if classes and loss_fn.weight is not None:  # a weighted mean divides by the weights: not a plain mean
        return None
    elementwise = copy.copy(loss_fn)
    elementwise.reduction = "none"

    def losses(out, y):
        if classes and out.dim() > 2:  # (N, n, C): the class dimension where cross-entropy wants it
            out = out.movedim(-1, 1)
            if y.is_floating_point() and y.dim() == out.dim():
                y = y.movedim(-1, 1)
        return elementwise(out, y).reshape(out.shape[0], -1).mean(1)

    return losses


def make_call(base, slots, losses, size: int, shared: bool):
    """``call(*params, *buffers, x, y) -> (out, losses)`` like the vmapped one, without vmap."""
    count = len(slots)

    def call(*tensors):
        for (table, attr), tensor in zip(slots, tensors):
            table[attr] = tensor
        x, y = tensors[count], tensors[count + 1]
        if shared:
            x, y = x.expand(size, *x.shape), y.expand(size, *y.shape)
        out = base(x)
        return out, losses(out, y)

    return call


def agrees(direct, vmapped) -> bool:
    """The direct call's (out, losses) equal vmap's within float32 rounding."""
    import torch

    for a, b in zip(direct, vmapped):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        scale = float(b.detach().abs().max()) if b.numel() else 0.0
        if not torch.allclose(a.detach(), b.detach(), rtol=1e-5, atol=1e-6 * max(scale, 1.0), equal_nan=True):
            return False
    return True
