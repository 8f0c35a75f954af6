"""A leaner optimizer step for plain SGD, and CUDA graphs for full-batch steps on a GPU.

On the tiny full-batch problems (100 points, two to four scalars) the Python around the
arithmetic *is* the step. The usual eager step, ``zero_grad(); loss.backward(); opt.step()``,
walks the parameters to clear ``.grad``, accumulates every gradient through an AccumulateGrad
node, and ``SGD.step`` spends most of its time in bookkeeping (its decorators, profiler scope,
``_init_group`` and per-group dispatch) before one ``add_`` per parameter.

For plain SGD (no momentum, weight decay, nesterov or maximize, a float learning rate) the
update is exactly ``p += -lr * grad``. :func:`sgd_step` does the same arithmetic with fewer ops:
``torch.autograd.grad`` returns the gradients without touching ``.grad``, and one
``torch._foreach_add_`` applies them to detached aliases of the parameters (hoisted once, so no
``no_grad`` context per step). On CPU ``SGD`` runs the same ``add_`` kernel per parameter, so the
parameters and losses are the same as the eager path's (``tests/test_fastpath.py`` checks it).
Any other optimizer, or a parameter with hooks, keeps the normal path: :func:`sgd_step` returns
None and the engine uses its own step.

What the fast path does not do: it leaves ``p.grad`` alone (the eager path leaves the last
gradient there); SGD without momentum keeps no state, so checkpoints are unaffected. The
learning rate is read from the optimizer's param group at every step, so a scheduler still works.

On CUDA, a full-batch step sees the same input tensors every epoch, so the whole step (forward,
backward, update) is captured once in a CUDA graph and replayed: one launch instead of dozens.
The first :data:`WARMUP` steps run eagerly on a side stream (they are real training steps), the
capture happens on the next one, and every later epoch replays it. If capture fails, the input
changes, or the learning rate changes, the step falls back to the eager fast step for good.
``REGFW_CUDA_GRAPHS=0`` turns graphs off. This path has not been run on a GPU by its tests
(the test machine has none); it is off on every device but CUDA.
"""

from __future__ import annotations

import os

WARMUP = 3  # eager steps on a side stream before capturing (the PyTorch-recommended warm-up)
ENV_DISABLE = "REGFW_FASTPATH"  # "0": always use the engine's plain eager step
ENV_GRAPHS = "REGFW_CUDA_GRAPHS"  # "0": no CUDA graphs


def enabled() -> bool:
    return os.environ.get(ENV_DISABLE, "1") != "0"


def plain_sgd_params(optimizer) -> list | None:
    """The parameters of a plain-SGD optimizer the fast step can drive, or None when it cannot."""
    import torch

    if type(optimizer) is not torch.optim.SGD:  # a subclass may override step()
        return None
    from torch.optim import optimizer as optim_module

    if (getattr(optimizer, "_optimizer_step_pre_hooks", None) or getattr(optimizer, "_optimizer_step_post_hooks", None)
            or getattr(optim_module, "_global_optimizer_pre_hooks", None)
            or getattr(optim_module, "_global_optimizer_post_hooks", None)):
        return None
    if len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    if (group.get("momentum", 0) != 0 or group.get("weight_decay", 0) != 0 or group.get("nesterov")
            or group.get("maximize") or group.get("differentiable") or isinstance(group["lr"], torch.Tensor)):
        return None
    params = [p for p in group["params"] if p.requires_grad]
    if not params or len({id(p) for p in params}) != len(params):
        return None
    for p in params:
        if (p.is_sparse or getattr(p, "_backward_hooks", None) or getattr(p, "_post_accumulate_grad_hooks", None)
                or p.grad is not None):
            return None
    if len({(p.device, p.dtype) for p in params}) != 1:
        return None
    return params


def sgd_step(model, loss_fn, optimizer, *, full_batch_inputs=None):
    """A ``step(xb, yb) -> (out, loss)`` for plain SGD, or None when the engine's step must run.

    ``full_batch_inputs=(x, y)`` on a CUDA device enables the CUDA-graph step for those tensors.
    """
    if not enabled():
        return None
    params = plain_sgd_params(optimizer)
    if params is None:
        return None
    step = _EagerSgdStep(model, loss_fn, optimizer.param_groups[0], params)
    if full_batch_inputs is not None and params[0].device.type == "cuda" and os.environ.get(ENV_GRAPHS, "1") != "0":
        return _GraphedStep(step, *full_batch_inputs)
    return step


class _EagerSgdStep:
    """The SGD update without ``.grad`` or ``step()``: gradients straight from the autograd engine,
    applied with one ``_foreach_add_``."""

    def __init__(self, model, loss_fn, group: dict, params: list):
        import torch

        self.model, self.loss_fn, self.group, self.params = model, loss_fn, group, params
        self.inputs = tuple(params)
        self.aliases = [p.detach() for p in params]  # same storage, outside autograd: no no_grad() per step
        self.grad = torch.autograd.grad
        self.update = torch._foreach_add_
        self.kernel, self.reduction = _mse_kernel(loss_fn)
        self.engine = None  # the engine's own entry point, once the first step showed it can be used
        self.ones = None
        self.fast = False  # set after the first step proved every gradient dense and present

    def __call__(self, xb, yb):
        out = self.model(xb)
        if not self.fast:
            return out, self._checked(out, yb)
        if self.kernel is not None and out.shape == yb.shape:
            loss = self.kernel(out, yb, self.reduction)  # what MSELoss ends in, minus its Python
        else:
            loss = self.loss_fn(out, yb)
        if self.engine is not None:
            grads = self.engine((loss,), self.ones, False, False, self.inputs, False, accumulate_grad=False)
        else:
            grads = self.grad(loss, self.inputs)
        self.update(self.aliases, grads, alpha=-self.group["lr"])
        return out, loss

    def _checked(self, out, yb):
        """The first step (and every step when a gradient is missing or sparse), per parameter,
        exactly as ``SGD`` does it: a parameter without a gradient is left alone."""
        import torch

        loss = self.loss_fn(out, yb)
        grads = self.grad(loss, self.inputs, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(self.params, grads):
                if g is not None:
                    p.add_(g, alpha=-self.group["lr"])
        self.fast = all(g is not None and g.layout == torch.strided for g in grads)
        if type(out) is not torch.Tensor or type(yb) is not torch.Tensor:
            self.kernel = None  # a tensor subclass may override the loss: keep MSELoss's own dispatch
        if self.fast and self.engine is None:
            self.engine, self.ones = _direct_engine(loss)
        return loss


def _mse_kernel(loss_fn):
    """``torch._C._nn.mse_loss`` and the reduction's enum for a plain ``nn.MSELoss`` without hooks.

    ``F.mse_loss`` checks for overrides, warns on shape mismatch, broadcasts (two views and an
    extra backward node) and maps the reduction name, then calls this kernel; with equal shapes the
    kernel alone gives the same loss and gradients."""
    import torch
    from torch import nn
    from torch.nn.modules import module

    hooks = (loss_fn, "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    if type(loss_fn) is not nn.MSELoss or any(getattr(loss_fn, name, None) for name in hooks[1:]):
        return None, None
    if any(getattr(module, f"_global{name}", None) for name in hooks[1:]):
        return None, None
    kernel = getattr(getattr(torch._C, "_nn", None), "mse_loss", None)
    try:
        reduction = nn._reduction.get_enum(loss_fn.reduction)
    except (AttributeError, ValueError):
        return None, None
    return (kernel, reduction) if kernel is not None else (None, None)


def _direct_engine(loss):
    """The autograd engine's ``run_backward``, as ``torch.autograd.grad`` calls it after its argument
    handling (tuple conversion, override checks, a fresh ``ones_like`` seed per call): hoisted here.
    CPU only (on CUDA the backward runs on device threads that expect the context ``grad`` stashes),
    a plain scalar loss, and only after a probe shows the call has the signature this code expects."""
    import torch

    if loss.device.type != "cpu" or loss.dim() != 0 or type(loss) is not torch.Tensor:
        return None, None
    try:
        run_backward = torch.autograd.Variable._execution_engine.run_backward
        probe = torch.ones((), dtype=loss.dtype, requires_grad=True)
        ones = (torch.ones_like(loss),)
        (got,) = run_backward((probe * 3,), ones, False, False, (probe,), False, accumulate_grad=False)
        if float(got) != 3.0:
            return None, None
    except Exception:  # noqa: BLE001 - any other torch: torch.autograd.grad it is
        return None, None
    return run_backward, ones


class _GraphedStep:
    """The eager fast step, captured once in a CUDA graph for fixed full-batch inputs."""

    def __init__(self, eager: _EagerSgdStep, x, y):
        self.eager, self.x, self.y = eager, x, y
        self.calls = 0
        self.graph = None
        self.failed = False
        self.lr = None
        self.side = None
        self.static_out = self.static_loss = None

    def __call__(self, xb, yb):
        if self.failed or xb is not self.x or yb is not self.y:
            return self.eager(xb, yb)
        if self.graph is not None:
            if self.eager.group["lr"] != self.lr:
                self.failed = True  # a scheduler changed the rate the graph has baked in
                return self.eager(xb, yb)
            self.graph.replay()
            # The static loss is overwritten by the next replay: hand out a copy.
            return self.static_out, self.static_loss.clone()
        import torch

        self.calls += 1
        if self.side is None:
            self.side = torch.cuda.Stream(device=xb.device)
        if self.calls <= WARMUP or not self.eager.fast:
            self.side.wait_stream(torch.cuda.current_stream(xb.device))
            with torch.cuda.stream(self.side):
                result = self.eager(xb, yb)
            torch.cuda.current_stream(xb.device).wait_stream(self.side)
            return result
        try:
            self._capture(torch)
        except Exception:  # noqa: BLE001 - anything graph capture refuses: stay eager
            self.graph, self.failed = None, True
            torch.cuda.synchronize(xb.device)
            return self.eager(xb, yb)
        self.graph.replay()  # capture records the work without doing it: this epoch's step
        return self.static_out, self.static_loss.clone()

    def _capture(self, torch) -> None:
        eager = self.eager
        self.lr = eager.group["lr"]
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.x.device)
        with torch.cuda.graph(graph):
            out = eager.model(self.x)
            loss = eager.loss_fn(out, self.y)
            grads = torch.autograd.grad(loss, eager.params)
            torch._foreach_add_(eager.aliases, grads, alpha=-self.lr)
        self.static_out, self.static_loss, self.graph = out, loss, graph
