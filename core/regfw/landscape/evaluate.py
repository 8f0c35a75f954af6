"""The training loss at many points of a plane, in batches: never one Python step per point.

The points' parameter sets are stacked and the model runs once per chunk through
``torch.func.vmap(functional_call)``. One more saving, exact in arithmetic: when the data go
straight into an ``nn.Linear`` (an MLP's first layer), that layer's output on the plane is
affine in the coordinates, ``x(W + u·D1 + v·D2)ᵀ + ... = A0 + u·A1 + v·A2``. The three products
are computed once and each point only combines them, which removes the one matmul that grows with
the data's width (500 features in mlp-regression, 200 in binary).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.func import functional_call, vmap

from regfw.errors import RegfwError, one_line

BUDGET_BYTES = 256 * 2**20  # activations held per chunk
CACHE_BYTES = 4 * 2**20  # a chunk's largest activation when the samples are split into blocks
POINTS_PER_BLOCK = 16


def losses_at(model, loss_fn, x, y, plane, coords, *, budget: int = BUDGET_BYTES, notes: list | None = None):
    """The loss at each row of ``coords`` (P, ndim) on the plane: a float64 tensor of P values.
    ``notes`` receives a line when the model had to be evaluated point by point."""
    model = model.eval()
    coords = coords.to(torch.float64)
    with torch.no_grad():
        runner = _Batched(model, loss_fn, x, y, plane)
        try:
            return _losses(runner, coords, len(x), budget)
        finally:
            if runner.note and notes is not None:
                notes.append(runner.note)


def _losses(runner, coords, n: int, budget: int):
    """Chunks of points; with sample blocks, every block of every chunk."""
    if runner.sample_block is None:
        chunk = max(1, min(len(coords), budget // max(1, runner.bytes_per_point)))
        return torch.cat([runner(coords[i:i + chunk]) for i in range(0, len(coords), chunk)]).double().cpu()
    # A mean loss over independent samples is the size-weighted mean of its blocks' losses: blocks
    # small enough for the chunk's activations to stay in cache, the points' work cut by ~3x.
    total = torch.zeros(len(coords), dtype=torch.float64)
    size = runner.sample_block
    for i in range(0, len(coords), POINTS_PER_BLOCK):
        params = runner.params(coords[i:i + POINTS_PER_BLOCK])
        for start in range(0, n, size):
            rows = slice(start, min(start + size, n))
            total[i:i + POINTS_PER_BLOCK] += (rows.stop - rows.start) / n * runner.loss(params, rows).double().cpu()
    return total


def loss_grid(model, loss_fn, x, y, plane, axes: list, notes: list | None = None):
    """The loss over the grid ``axes`` (one or two 1-D coordinate tensors): shape (len(v), len(u)) or (len(u),)."""
    axes = [torch.as_tensor(a, dtype=torch.float64) for a in axes]
    if len(axes) == 1:
        return losses_at(model, loss_fn, x, y, plane, axes[0][:, None], notes=notes)
    v, u = torch.meshgrid(axes[1], axes[0], indexing="ij")
    values = losses_at(model, loss_fn, x, y, plane, torch.stack([u.reshape(-1), v.reshape(-1)], dim=1), notes=notes)
    return values.reshape(len(axes[1]), len(axes[0]))


class _Batched:
    """The evaluator of one plane: ``self(coords, rows)`` is the loss of a chunk of points on the
    samples ``rows`` (all of them by default)."""

    def __init__(self, model, loss_fn, x, y, plane):
        self.x, self.y, self.loss_fn, self.plane = x, y, loss_fn, plane
        self.origin = [t.to(x.device) for t in plane.origin]
        self.dirs = [[t.to(x.device) for t in d] for d in plane.directions]
        self.center = torch.tensor(plane.center, dtype=torch.float64)
        self.buffers = dict(model.named_buffers())
        probe = _probe(model, x)
        self.bytes_per_point = probe.bytes_per_point
        self.sample_block = None
        if probe.per_sample and _mean_over_samples(loss_fn) and probe.widest:
            block = max(32, CACHE_BYTES // (POINTS_PER_BLOCK * probe.widest))
            self.sample_block = block if block < len(x) else None
        self.model, self.affine = model, None
        self.batched, self.note = True, ""
        if probe.first_linear is not None:
            self._use_affine(probe.first_linear)

    def _use_affine(self, path: str) -> None:
        """Replace the first layer by its precomputed affine pieces (in a copy of the model)."""
        names, prefix = self.plane.names, f"{path}." if path else ""  # "": the model is the nn.Linear itself
        i_w = names.index(f"{prefix}weight")
        i_b = names.index(f"{prefix}bias") if f"{prefix}bias" in names else None

        def layer(w, b):
            out = self.x @ w.T
            return out + b if b is not None else out

        pieces = [layer(self.origin[i_w], self.origin[i_b] if i_b is not None else None)]
        pieces += [layer(d[i_w], d[i_b] if i_b is not None else None) for d in self.dirs]
        pieces = torch.stack(pieces)
        if path:
            model = copy.deepcopy(self.model)
            parent, _, leaf = path.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, _Affine(pieces))
        else:
            model = _Affine(pieces)
        self.model, self.affine = model, (prefix, {i_w, i_b} - {None}, pieces)

    def __call__(self, coords):
        return self.loss(self.params(coords))

    def params(self, coords) -> dict:
        """The stacked parameters of a chunk of points, as ``functional_call`` takes them."""
        offsets = (coords - self.center).to(self.origin[0].dtype).to(self.x.device)  # (B, ndim)
        params = {}
        skip = self.affine[1] if self.affine else set()
        for i, (name, t) in enumerate(zip(self.plane.names, self.origin)):
            if i in skip:
                continue
            stacked = t.expand(len(offsets), *t.shape).clone()
            for k, d in enumerate(self.dirs):
                stacked += offsets[:, k].reshape(-1, *([1] * t.ndim)) * d[i]
            params[name] = stacked
        if self.affine:
            ones = torch.ones(len(offsets), 1, dtype=offsets.dtype, device=offsets.device)
            params[f"{self.affine[0]}coef"] = torch.cat([ones, offsets], dim=1)
        return params

    def loss(self, params: dict, rows: slice = slice(None)):
        """The losses of the stacked points ``params`` on the samples ``rows``."""
        buffers = self.buffers
        if self.affine:
            buffers = buffers | {f"{self.affine[0]}pieces": self.affine[2][:, rows]}
        x, y = self.x[rows], self.y[rows]

        def one(p):
            return self.loss_fn(functional_call(self.model, (p, buffers), (x,)), y)

        if self.batched:
            try:
                return vmap(one)(params)
            except Exception as exc:  # noqa: BLE001 - e.g. an LSTM: no batching rule for its kernel
                self.batched, self.note = False, f"evaluated point by point: vmap cannot batch this model ({one_line(exc)[:80]})"
        count = len(next(iter(params.values())))
        try:
            return torch.stack([one({k: v[i] for k, v in params.items()}) for i in range(count)])
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback
            raise RegfwError(f"cannot evaluate the loss of this model on the plane: {one_line(exc)}") from exc


class _Affine(torch.nn.Module):
    """Stand-in for the first ``nn.Linear``: ``coef[0]·A0 + coef[1]·A1 (+ coef[2]·A2)``."""

    def __init__(self, pieces):
        super().__init__()
        self.register_buffer("pieces", pieces)
        self.coef = torch.nn.Parameter(torch.zeros(len(pieces), dtype=pieces.dtype))

    def forward(self, _x):
        return torch.tensordot(self.coef, self.pieces, dims=1)


def _mean_over_samples(loss_fn) -> bool:
    """torch's own losses with ``reduction='mean'`` and no class weights average over samples."""
    return (type(loss_fn).__module__ == "torch.nn.modules.loss" and getattr(loss_fn, "reduction", None) == "mean"
            and getattr(loss_fn, "weight", None) is None)


@dataclass
class _Probe:
    bytes_per_point: int  # activations of one point on all the samples
    widest: int  # bytes per sample of the largest activation
    first_linear: str | None  # the nn.Linear the data enter directly, called once
    per_sample: bool  # the model's outputs for a slice of samples are the slice of its outputs


def _probe(model, x) -> _Probe:
    """One plain forward with hooks, and one on a slice of the samples."""
    sizes, entries, calls = [], [], {}
    linear_names = {m: n for n, m in model.named_modules() if type(m).forward is torch.nn.Linear.forward}

    def pre(module, args):
        calls[module] = calls.get(module, 0) + 1
        a = args[0] if args else None
        if (isinstance(a, torch.Tensor) and a.data_ptr() == x.data_ptr() and a.shape == x.shape
                and a.stride() == x.stride()):
            entries.append(module)

    def post(module, args, out):
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())

    handles = [m.register_forward_pre_hook(pre) for m in linear_names]
    handles += [m.register_forward_hook(post) for m in model.modules()]
    try:
        full = model(x)
    finally:
        for h in handles:
            h.remove()
    first = None
    if len(entries) == 1 and calls[entries[0]] == 1 and not any(True for _ in entries[0].buffers()):
        first = linear_names[entries[0]]
    per_sample = False
    if isinstance(full, torch.Tensor) and len(x) > 1 and full.shape[:1] == x.shape[:1]:
        part = model(x[: max(1, len(x) // 3)])
        per_sample = part.shape == full[: len(part)].shape and bool(torch.allclose(part, full[: len(part)],
                                                                                  rtol=1e-4, atol=1e-6))
    widest = max(sizes, default=0) // max(1, len(x))
    return _Probe(3 * sum(sizes) + x.numel() * x.element_size(), widest, first, per_sample)
