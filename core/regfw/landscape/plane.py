"""The plane (or line) a landscape is drawn on: an origin in parameter space and one or two directions.

A point with axis coordinates ``(u, v)`` is ``origin + (u - center[0]) * d1 + (v - center[1]) * d2``.
Three ways to choose the directions:

- ``params``: the model's own scalars as axes (a model with one or two of them, as in document
  002): the coordinates are the parameter values themselves;
- ``random``: Gaussian directions normalized filter-wise to the weights' scale (Li et al.,
  "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018): each row of a weight matrix (each
  output unit) gets the norm of that row; a tensor of one dimension or less is scaled as a whole
  (Li et al. zero biases, which would leave tiny models with no direction at all);
- ``pca``: the two principal directions of the trajectory ``θ_t - θ_final`` (unit vectors), so the
  path lies in the plane up to the variance the two components leave out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from regfw.errors import RegfwError

KINDS = ("params", "random", "pca")


@dataclass
class Plane:
    kind: str
    names: list  # parameter names, in the model's order
    origin: list  # tensors: the final parameters
    directions: list  # one or two directions, each a list of tensors shaped like origin
    center: list  # the origin's coordinate on each axis (params: its values; else 0)
    labels: list  # one axis label per direction
    note: str = ""  # e.g. the share of the path's variance the pca plane holds
    extra: dict = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return len(self.directions)

    def line(self) -> "Plane":
        """The same origin along the first direction only (``--1d``)."""
        return Plane(self.kind, self.names, self.origin, self.directions[:1], self.center[:1], self.labels[:1],
                     self.note, self.extra)

    def flat(self):
        """``(origin, directions)`` flattened: a vector of D and a (ndim, D) matrix."""
        import torch

        origin = torch.cat([t.reshape(-1) for t in self.origin])
        dirs = torch.stack([torch.cat([t.reshape(-1) for t in d]) for d in self.directions])
        return origin, dirs

    def project(self, points):
        """Axis coordinates of the least-squares projection of flattened parameter vectors (K, D)."""
        import torch

        origin, dirs = self.flat()
        delta = (points.double() - origin.double()).T  # (D, K)
        coords = torch.linalg.lstsq(dirs.double().T, delta).solution.T  # (K, ndim)
        return coords + torch.tensor(self.center, dtype=torch.float64)

    def at(self, coords):
        """Flattened parameter vectors (K, D) at axis coordinates (K, ndim)."""
        origin, dirs = self.flat()
        offsets = coords.to(origin.dtype) - coords.new_tensor(self.center).to(origin.dtype)
        return origin + offsets @ dirs


def named_parameters(model) -> tuple[list, list]:
    names, tensors = [], []
    for name, p in model.named_parameters():
        names.append(name)
        tensors.append(p.detach().clone())
    return names, tensors


def scalar_names(names: list, tensors: list) -> list[str]:
    """``w``, ``b`` or ``weight[0]``: one label per scalar of the model."""
    out = []
    for name, t in zip(names, tensors):
        out += [name] if t.numel() == 1 else [f"{name}[{i}]" for i in range(t.numel())]
    return out


def params_plane(model) -> Plane:
    """The model's one or two scalars as axes, the origin at their current values."""
    import torch

    names, origin = named_parameters(model)
    labels = scalar_names(names, origin)
    if not 1 <= len(labels) <= 2:
        raise RegfwError(f"--directions params needs a model with one or two scalar parameters; this one has "
                         f"{len(labels)} (use --directions random, or pca with --snapshots)")
    flat = torch.cat([t.reshape(-1) for t in origin])
    directions = []
    for i in range(len(labels)):
        unit = torch.zeros_like(flat)
        unit[i] = 1.0
        directions.append(_unflatten(unit, origin))
    return Plane("params", names, origin, directions, [float(v) for v in flat], labels)


def random_plane(model, seed: int, ndim: int = 2) -> Plane:
    """Filter-normalized Gaussian directions drawn from ``seed`` (one for a one-scalar model)."""
    import torch

    names, origin = named_parameters(model)
    ndim = min(ndim, sum(t.numel() for t in origin))
    generator = torch.Generator().manual_seed(seed)
    directions = []
    for _ in range(ndim):
        d = [torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t.dtype) for t in origin]
        directions.append([_filter_normalize(di, ti) for di, ti in zip(d, origin)])
    labels = [f"random direction {i + 1} (filter-normalized, seed {seed})" for i in range(ndim)]
    return Plane("random", names, origin, directions, [0.0] * ndim, labels)


def _filter_normalize(d, theta):
    if d.ndim <= 1:
        return d * (theta.norm() / (d.norm() + 1e-10))
    rows_d = d.reshape(d.shape[0], -1)
    rows_t = theta.reshape(theta.shape[0], -1)
    scale = rows_t.norm(dim=1, keepdim=True) / (rows_d.norm(dim=1, keepdim=True) + 1e-10)
    return (rows_d * scale).reshape(d.shape)


def pca_plane(model, snapshots) -> Plane:
    """The trajectory's two principal directions around the final parameters."""
    import torch

    names, origin = named_parameters(model)
    if snapshots is None:
        raise RegfwError("--directions pca needs the run's snapshots: run it with --snapshots K")
    flat = torch.cat([t.reshape(-1) for t in origin]).double()
    delta = snapshots.matrix(names).double() - flat
    delta = delta[torch.isfinite(delta).all(dim=1)]
    if len(delta) < 3:
        raise RegfwError("--directions pca needs at least three finite snapshots")
    _, s, vh = torch.linalg.svd(delta, full_matrices=False)
    ndim = min(2, len(s))
    variance = (s**2) / (s**2).sum()
    directions = [_unflatten(vh[i].to(origin[0].dtype), origin) for i in range(ndim)]
    labels = [f"PC{i + 1} of the path ({100 * float(variance[i]):.1f}% of its variance)" for i in range(ndim)]
    return Plane("pca", names, origin, directions, [0.0] * ndim, labels,
                 note=f"the plane holds {100 * float(variance[:ndim].sum()):.1f}% of the path's variance")


def _unflatten(vector, like: list) -> list:
    out, i = [], 0
    for t in like:
        out.append(vector[i:i + t.numel()].reshape(t.shape).to(t.dtype))
        i += t.numel()
    return out


def make_plane(kind: str | None, model, snapshots=None, seed: int = 0) -> Plane:
    """``kind`` or, when None, the default: params for one or two scalars, else pca with
    snapshots, else random."""
    if kind is None:
        count = sum(p.numel() for p in model.parameters())
        kind = "params" if count <= 2 else ("pca" if snapshots is not None else "random")
    if kind == "params":
        return params_plane(model)
    if kind == "random":
        return random_plane(model, seed)
    if kind == "pca":
        return pca_plane(model, snapshots)
    raise RegfwError(f"unknown directions '{kind}'; choose from {', '.join(KINDS)}")
