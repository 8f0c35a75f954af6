"""Stacked optimizers: one update for N models whose parameters are stacked along dim 0.

Each point keeps its own hyperparameters: they are read from the N optimizers built exactly as
the single runs build them (``optimizer.param_groups[0]``) and become (N, 1, ..., 1) columns, so
points that differ in lr, momentum, betas, eps or weight decay share one update. The arithmetic
follows torch.optim's single-tensor CPU code line by line (the same ops in the same order, the
bias corrections in float64 as Python computes them), so a stacked point's parameters equal its
single run's within float rounding.

A plugin optimizer vectorizes when its registry entry says how: ``extras={"vectorized": make}``
with ``make(optimizers, params) -> step``, where ``optimizers`` are the N built optimizers,
``params`` the stacked parameter tensors (leading dim N, updated in place) and ``step(grads)``
applies one update (docs/plugins.md, "Vectorized sweeps"; the example plugin's ``lion``).
"""

from __future__ import annotations

KNOWN = ("SGD", "Adam", "AdamW", "RMSprop")


def hyper(optimizers, key: str) -> list:
    """Every point's value of a hyperparameter (its single param group)."""
    return [opt.param_groups[0][key] for opt in optimizers]


def column(values, like):
    """Per-point values as a (N, 1, ..., 1) tensor of ``like``'s dtype and device: the values go
    through float64 first, as Python floats do before torch casts a scalar to the tensor's dtype."""
    import torch

    t = values if isinstance(values, torch.Tensor) else torch.tensor([float(v) for v in values], dtype=torch.float64)
    return t.to(device=like.device, dtype=like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))


def _all(values, value) -> bool:
    return all(v == value for v in values)


def unsupported(optimizer) -> str | None:
    """Why a built optimizer cannot be stacked by regfw itself, or None."""
    import torch

    name = type(optimizer).__name__
    if name not in KNOWN or type(optimizer) is not getattr(torch.optim, name):
        return f"optimizer {name} has no stacked form (a plugin optimizer needs extras['vectorized'])"
    if len(optimizer.param_groups) != 1:
        return "optimizer has several parameter groups"
    group = optimizer.param_groups[0]
    for flag in ("maximize", "amsgrad", "centered", "differentiable", "capturable"):
        if group.get(flag):
            return f"optimizer flag {flag}=True has no stacked form"
    if group.get("fused"):
        return "fused optimizers have no stacked form"
    if any(isinstance(v, torch.Tensor) for v in group.values() if not isinstance(v, list)):
        return "optimizer hyperparameters given as tensors"
    return None


def stacked(optimizers, params: list, factory=None):
    """``step(grads)`` for the stacked ``params``: a plugin's ``factory`` or regfw's own."""
    if factory is not None:
        return factory(optimizers, params)
    kind = {"SGD": StackedSGD, "Adam": StackedAdam, "AdamW": StackedAdam, "RMSprop": StackedRMSprop}
    return kind[type(optimizers[0]).__name__](optimizers, params)


class Rows:
    """``keep(rows, params)``: the update goes on for the stack's ``rows`` only (the others left
    it, :meth:`regfw.vectorize.stack.Stack.keep`), on its new stacked ``params``. Every tensor
    these classes hold is per point along dim 0 (hyperparameter columns, momentum and moment
    buffers), so each is cut the same way. A plugin's step without ``keep`` keeps its rows.

    ``grow(optimizers, params, new)``: the last ``new`` of ``optimizers`` (one per row, in row
    order) joined the stack (:meth:`regfw.vectorize.stack.Stack.join`, a search's refill). Their
    hyperparameter columns are read as at the start; their state starts as torch.optim starts it
    (zero buffers, step 0) while the other rows keep theirs. ``STATE`` names the per-row state."""

    STATE: tuple = ()

    def can_grow(self, optimizers) -> str | None:
        """Why rows cannot join this update, or None."""
        return None

    def keep(self, rows: list, params: list) -> None:
        import torch

        size = self.params[0].shape[0]
        index = torch.tensor(rows, dtype=torch.long)

        def cut(value):
            if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == size:
                return value.index_select(0, index.to(value.device))
            if isinstance(value, list):
                return [cut(v) for v in value]
            return value

        for name, value in list(vars(self).items()):
            if name != "params":
                setattr(self, name, cut(value))
        self.params = params

    def grow(self, optimizers, params, new: int) -> None:
        import torch

        fresh = type(self)(optimizers, params)
        for name in self.STATE:
            old, start = getattr(self, name), getattr(fresh, name)
            if isinstance(old, list):  # one tensor (or None before the first step) per parameter
                setattr(fresh, name, [o if o is None else torch.cat([o, torch.zeros((new,) + tuple(o.shape[1:]),
                                                                              dtype=o.dtype, device=o.device)])
                                      for o in old])
            elif old is not None:  # a step count: per row once rows joined at different times
                count = old if isinstance(old, torch.Tensor) else torch.full((len(optimizers) - new,), float(old),
                                                                            dtype=torch.float64)
                setattr(fresh, name, torch.cat([count, torch.zeros(new, dtype=torch.float64)]))
            else:
                setattr(fresh, name, start)
        vars(self).clear()
        vars(self).update(vars(fresh))  # in place: the stacked loop holds this step


class StackedSGD(Rows):
    """torch.optim.SGD: weight decay, momentum (with dampening), nesterov. A point with momentum 0
    gets buf = 0*buf + g = g, the plain step, so mixed momenta share one bucket. A row that joins
    later gets a zero buffer: 0*m + g = g, torch's first step, without dampening only."""

    STATE = ("bufs",)

    def can_grow(self, optimizers) -> str | None:
        if any(d != 0 for d in hyper(optimizers, "dampening")):
            return "SGD with dampening: a row joining later would not take torch's first step"
        return None

    def __init__(self, optimizers, params):
        self.params = params
        lrs, self.momenta, decays = hyper(optimizers, "lr"), hyper(optimizers, "momentum"), hyper(optimizers, "weight_decay")
        self.nesterov = bool(optimizers[0].param_groups[0].get("nesterov"))
        damp = hyper(optimizers, "dampening")
        self.lr = -lrs[0] if _all(lrs, lrs[0]) else None  # one float: exactly the single run's add_(alpha)
        self.neg_lr = [column([-v for v in lrs], p) for p in params]
        self.decay = None if _all(decays, 0) else [column(decays, p) for p in params]
        self.momentum = None if _all(self.momenta, 0) else [column(self.momenta, p) for p in params]
        self.one_minus_damp = None if _all(damp, 0) else [column([1 - d for d in damp], p) for p in params]
        self.bufs = [None] * len(params)

    def __call__(self, grads) -> None:
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.decay is not None:
                g = g + self.decay[i] * p
            if self.momentum is not None:
                buf = self.bufs[i]
                if buf is None:
                    buf = self.bufs[i] = g.clone()
                else:
                    buf.mul_(self.momentum[i]).add_(g if self.one_minus_damp is None else g * self.one_minus_damp[i])
                g = g + self.momentum[i] * buf if self.nesterov else buf
            if self.lr is not None:
                p.add_(g, alpha=self.lr)
            else:
                p.addcmul_(g, self.neg_lr[i])


class StackedAdam(Rows):
    """torch.optim.Adam and AdamW (decoupled weight decay), without amsgrad. Once rows joined at
    different times, the step count (and so the bias corrections) is per row."""

    STATE = ("avg", "avg_sq", "steps")

    def __init__(self, optimizers, params):
        import torch

        self.params, self.steps = params, 0
        group = optimizers[0].param_groups[0]
        self.decoupled = type(optimizers[0]).__name__ == "AdamW" or bool(group.get("decoupled_weight_decay"))
        f64 = lambda vals: torch.tensor([float(v) for v in vals], dtype=torch.float64)  # noqa: E731
        self.lr = f64(hyper(optimizers, "lr"))
        betas = hyper(optimizers, "betas")
        self.beta1, self.beta2 = f64([b[0] for b in betas]), f64([b[1] for b in betas])
        decays = hyper(optimizers, "weight_decay")
        self.decay = None if _all(decays, 0) else f64(decays)
        col = lambda t: [column(t, p) for p in params]  # noqa: E731
        self.one_minus_b1, self.b2, self.one_minus_b2 = col(1 - self.beta1), col(self.beta2), col(1 - self.beta2)
        self.eps = col(f64(hyper(optimizers, "eps")))
        if self.decay is not None:
            self.wd = col(self.decay)
            self.shrink = col(1 - self.lr * self.decay)  # AdamW: param *= 1 - lr*wd, in float64 first
        self.avg = [torch.zeros_like(p) for p in params]
        self.avg_sq = [torch.zeros_like(p) for p in params]

    def __call__(self, grads) -> None:
        import torch

        self.steps += 1
        # Python computes these per point in float64; so do we, then cast like a scalar.
        bias1 = 1 - self.beta1 ** self.steps
        bias2_sqrt = torch.sqrt(1 - self.beta2 ** self.steps)
        neg_step = -(self.lr / bias1)
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.decay is not None:
                if self.decoupled:
                    p.mul_(self.shrink[i])
                else:
                    g = g + self.wd[i] * p
            self.avg[i].lerp_(g, self.one_minus_b1[i])
            self.avg_sq[i].mul_(self.b2[i]).addcmul_(g * self.one_minus_b2[i], g)
            denom = (self.avg_sq[i].sqrt() / column(bias2_sqrt, p)).add_(self.eps[i])
            p.add_((self.avg[i] / denom) * column(neg_step, p))


class StackedRMSprop(Rows):
    """torch.optim.RMSprop, not centered; momentum 0 and > 0 mix (buf = 0*buf + g/avg)."""

    STATE = ("square", "bufs")

    def __init__(self, optimizers, params):
        import torch

        self.params = params
        col = lambda vals: [column(vals, p) for p in params]  # noqa: E731
        alphas, momenta = hyper(optimizers, "alpha"), hyper(optimizers, "momentum")
        decays = hyper(optimizers, "weight_decay")
        self.alpha, self.one_minus_alpha = col(alphas), col([1 - a for a in alphas])
        self.eps, self.neg_lr = col(hyper(optimizers, "eps")), col([-v for v in hyper(optimizers, "lr")])
        self.decay = None if _all(decays, 0) else col(decays)
        self.momentum = None if _all(momenta, 0) else col(momenta)
        self.square = [torch.zeros_like(p) for p in params]
        self.bufs = [torch.zeros_like(p) for p in params] if self.momentum is not None else None

    def __call__(self, grads) -> None:
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.decay is not None:
                g = g + self.decay[i] * p
            self.square[i].mul_(self.alpha[i]).addcmul_(g * self.one_minus_alpha[i], g)
            avg = self.square[i].sqrt().add_(self.eps[i])
            if self.momentum is not None:
                self.bufs[i].mul_(self.momentum[i]).add_(g / avg)
                p.addcmul_(self.bufs[i], self.neg_lr[i])
            else:
                p.add_((g / avg) * self.neg_lr[i])
