"""Lion (EvoLved Sign Momentum), from Chen et al. 2023, written from the paper's update rule:

    c = beta1 * m + (1 - beta1) * g          # the direction
    p = p - lr * (sign(c) + weight_decay * p)
    m = beta2 * m + (1 - beta2) * g          # the momentum kept

Every coordinate moves by exactly lr per step, so lr is usually 3-10x smaller than Adam's.
"""

import torch


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                momentum = state["exp_avg"]
                direction = momentum.mul(beta1).add_(p.grad, alpha=1 - beta1).sign_()
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(direction, alpha=-group["lr"])
                momentum.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss


def stacked(optimizers, params):
    """Lion for N stacked models (``regfw sweep --vectorize``): ``optimizers`` are the N Lions
    built as the single runs build them, ``params`` the stacked parameters (leading dim N), updated
    in place by the returned ``step(grads)``. Each point keeps its own lr, betas and weight decay,
    as (N, 1, ..., 1) columns; the ops are the ones ``Lion.step`` does, in the same order."""
    from regfw.vectorize.optimizers import column, hyper

    lrs, betas, decays = hyper(optimizers, "lr"), hyper(optimizers, "betas"), hyper(optimizers, "weight_decay")
    cols = lambda values: [column(values, p) for p in params]  # noqa: E731
    beta1, keep1 = cols([b[0] for b in betas]), cols([1 - b[0] for b in betas])
    beta2, keep2 = cols([b[1] for b in betas]), cols([1 - b[1] for b in betas])
    neg_lr = cols([-lr for lr in lrs])
    shrink = cols([1 - lr * wd for lr, wd in zip(lrs, decays)]) if any(decays) else None
    momenta = [torch.zeros_like(p) for p in params]

    def step(grads):
        for i, (p, g) in enumerate(zip(params, grads)):
            direction = momenta[i].mul(beta1[i]).add_(g * keep1[i]).sign_()
            if shrink is not None:
                p.mul_(shrink[i])
            p.addcmul_(direction, neg_lr[i])
            momenta[i].mul_(beta2[i]).add_(g * keep2[i])

    return step
