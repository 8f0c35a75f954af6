"""Which sweep points can train together as one stacked program, and why the others cannot.

Points join one bucket when they share everything but what stacking handles per point: the seed
(initial weights, generated data, shuffle order) and the optimizer's numeric hyperparameters
(lr, momentum, betas, eps, weight decay ...). So the key is the device, the dataset (name and
params), the model, the loss, the optimizer's name and its non-numeric params, and every training
setting. One representative per key is then built and probed (:func:`regfw.vectorize.stack.probe`)
before any run exists; a key that cannot stack runs the normal way with its reason, one line per
reason. Buckets are cut to a memory budget and to ``max_bucket``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from regfw.errors import RegfwError, one_line

DEFAULT_BUDGET = 2 << 30  # bytes per bucket on CPU; on CUDA half the free device memory
STATE_COPIES = 6  # parameters, gradients, optimizer state (two for Adam) and temporaries


@dataclass
class Plan:
    buckets: list = field(default_factory=list)  # lists of grid positions, each of two points or more
    alone: list = field(default_factory=list)  # (grid position, reason): run the normal way

    def reasons(self) -> dict:
        """reason -> the positions it sends the normal way, in grid order."""
        out: dict = {}
        for index, reason in self.alone:
            out.setdefault(reason, []).append(index)
        return out


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def group_key(config) -> str:
    """What must be equal for two points to stack (everything but seed and numeric optimizer values)."""
    optimizer = {k: v for k, v in config.optimizer.params.items() if not _numeric(v)}
    parts = [config.device, config.dataset.name, config.dataset.params, config.model.name, config.model.params,
             config.loss.name, config.loss.params, config.optimizer.name, optimizer, config.train]
    return json.dumps(parts, sort_keys=True, default=str)


def static_reason(config) -> str | None:
    if config.train.get("grad") == "formula":
        return "train.grad=formula: the model computes its own gradient"
    return None


def _budget(device) -> int:
    if getattr(device, "type", "") == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    return DEFAULT_BUDGET


def point_bytes(state, shared_data: bool) -> int:
    """A point's share of a bucket's memory: its data (unless every point has the same) and
    parameters with gradients and optimizer state. Shuffled batches are gathered one at a time
    and, like activations, not counted."""
    data = [t for t in (state.data.x_train, state.data.y_train, state.data.x_test, state.data.y_test) if t is not None]
    data_bytes = sum(t.numel() * t.element_size() for t in data)
    params = sum(p.numel() * p.element_size() for p in state.model.parameters())
    # Not shared: each point's own tensors stay alive (summaries and artifacts read them) beside the stacked copy.
    return (0 if shared_data else 2 * data_bytes) + STATE_COPIES * params


def probe_group(config, registry) -> tuple[str | None, object]:
    """Build one point of a group and try it stacked: (reason or None, the built state)."""
    from regfw.build import build_state
    from regfw.device import resolve_device
    from regfw.vectorize.optimizers import unsupported
    from regfw.vectorize.stack import probe

    try:
        state = build_state(config, registry, resolve_device(config.device))
    except RegfwError as exc:
        return f"it cannot be built: {exc}", None
    entry = registry.get("optimizer", config.optimizer.name)
    reason = None if callable(entry.extras.get("vectorized")) else unsupported(state.optimizer)
    if reason is None:
        try:
            reason = probe([state])
        except Exception as exc:  # noqa: BLE001
            reason = f"torch.func cannot vmap the model: {one_line(exc)}"
    return reason, state


def plan_buckets(points: list, registry, *, max_bucket: int | None = None, budget: int | None = None,
                 jobs: int = 1) -> Plan:
    """Group ``points`` (a grid's :class:`~regfw.sweep.grid.Point`) into buckets. With ``jobs``
    worker processes a group is cut into at least that many buckets (unless ``max_bucket`` says
    otherwise), so every worker gets one: each worker also writes its points' records."""
    plan = Plan()
    groups: dict = {}
    for position, point in enumerate(points):
        reason = static_reason(point.config)
        if reason:
            plan.alone.append((position, reason))
        else:
            groups.setdefault(group_key(point.config), []).append(position)
    for members in groups.values():
        if len(members) == 1:
            plan.alone.append((members[0], "no other point shares its model, loss, dataset, optimizer and training "
                                           "settings"))
            continue
        first = points[members[0]].config
        reason, state = probe_group(first, registry)
        if reason:
            plan.alone += [(m, reason) for m in members]
            continue
        shared = len({points[m].config.seed for m in members}) == 1
        limit = budget if budget is not None else _budget(state.device)
        fits = max(1, limit // max(1, point_bytes(state, shared)))
        size = min(fits, max_bucket or max(2, math.ceil(len(members) / max(1, jobs))))
        if size < 2:
            why = "--max-bucket 1" if max_bucket == 1 else (
                f"one point needs {point_bytes(state, shared) >> 20} MiB, over the {limit >> 20} MiB budget")
            plan.alone += [(m, why) for m in members]
            continue
        chunks = math.ceil(len(members) / size)
        per = math.ceil(len(members) / chunks)  # equal-sized buckets rather than one full and one tiny
        for start in range(0, len(members), per):
            chunk = members[start:start + per]
            if len(chunk) == 1:
                plan.alone.append((chunk[0], "left over after cutting its group into buckets"))
            else:
                plan.buckets.append(chunk)
    plan.alone.sort()
    plan.buckets.sort()
    return plan
