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
import functools
import types


# From this many weights a point, a layer's backward is regfw's own (:func:`_stacked_linear`): below
# it, the Python of a custom autograd Function costs more than the strided reads it saves (linear's
# 1x1 layer stacked 32 times: 0.20 s -> 0.27 s for 1000 steps; mlp-regression's 500x256 stacked 8
# times: 0.76 s -> 0.62 s an epoch).
OWN_BACKWARD_FROM = 1024


def _linear_forward(self, x):
    """nn.Linear with weight (N, out, in) and bias (N, out) on x (N, ..., in)."""
    import torch

    if x.dim() == 3 and self.weight.shape[1] * self.weight.shape[2] >= OWN_BACKWARD_FROM:
        return _stacked_linear().apply(x, self.weight, self.bias)
    weight = self.weight.transpose(1, 2)
    if x.dim() == 3:
        return torch.bmm(x, weight) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), x, weight)
    out = torch.matmul(x.reshape(x.shape[0], -1, x.shape[-1]), weight).reshape(*x.shape[:-1], weight.shape[-1])
    if self.bias is not None:
        out = out + self.bias.reshape(x.shape[0], *([1] * (x.dim() - 2)), -1)
    return out


@functools.cache
def _stacked_linear():
    """``apply(x, weight, bias)``: (N, n, in) -> (N, n, out) with the gradients laid out as the
    parameters are. Left to autograd, ``baddbmm(bias, x, weight.transpose(1, 2))`` hands back the
    weight's gradient as a transposed view, and every optimizer op on it then reads memory
    strided: 4x slower for a 256x500 layer stacked 8 times (1.4 ms against 0.36 ms an ``add_``).
    The products are the ones ``nn.Linear``'s own backward takes, per point: the weight's
    gradient is grad^T @ x, the input's grad @ weight, the bias's the sum over rows."""
    import torch

    class StackedLinear(torch.autograd.Function):
        @staticmethod
        def forward(x, weight, bias):
            weight_t = weight.transpose(1, 2)
            return torch.bmm(x, weight_t) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, weight_t)

        @staticmethod
        def setup_context(ctx, inputs, output):
            x, weight, bias = inputs
            ctx.save_for_backward(x, weight)
            ctx.has_bias = bias is not None

        @staticmethod
        def backward(ctx, grad):
            x, weight = ctx.saved_tensors
            wants_x, wants_weight, wants_bias = ctx.needs_input_grad
            grad_weight = None
            if wants_weight and weight.transpose(1, 2).is_contiguous():  # laid out by :func:`transposed_weights`
                grad_weight = torch.bmm(x.transpose(1, 2), grad).transpose(1, 2)
            elif wants_weight:
                grad_weight = torch.bmm(grad.transpose(1, 2), x)
            return (torch.bmm(grad, weight) if wants_x else None, grad_weight,
                    grad.sum(1) if ctx.has_bias and wants_bias else None)

    return StackedLinear


def _plain_linear(module) -> bool:
    """An nn.Linear (a subclass too) computing nn.Linear's own forward: one that has a per-point form."""
    from torch import nn

    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def transposed_weights(model) -> set:
    """Names of the weights whose stacked copy is best kept as (N, in, out) in memory (shape still
    (N, out, in)): the nn.Linear layers that take regfw's own backward. The forward then multiplies
    by a contiguous matrix and the weight's gradient comes out of ``bmm(x^T, grad)`` already in the
    parameter's layout; (N, out, in) memory needs ``bmm(grad^T, x)``, which MKL runs 2.5x slower
    for mlp-regression's 500x256 layer stacked 32 times (250 against 105 us a point). Chosen
    before the first forward: a model that then keeps vmap keeps this layout too (the same values;
    its optimizer reads vmap's gradients strided, as every stacked wide layer did before)."""
    return {f"{name}.weight" if name else "weight" for name, module in model.named_modules()
            if _plain_linear(module) and module.in_features * module.out_features >= OWN_BACKWARD_FROM}


def template(model):
    """A meta-device copy of ``model`` whose nn.Linear layers multiply per point, or None when it
    holds another torch layer with parameters (convolutions, recurrent layers, norms, embeddings:
    they have no per-point form here, so vmap stays)."""
    base = copy.deepcopy(model).to("meta")
    for module in base.modules():
        if _plain_linear(module):
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
