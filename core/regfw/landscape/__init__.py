"""Loss landscapes: the training loss on a plane (or a line) through a model's parameters.

- :func:`compute` evaluates a built model's loss on a grid of a plane chosen by
  :func:`make_plane` (``params``, ``random`` filter-normalized, or ``pca`` of the path) and returns
  a :class:`Landscape`; :mod:`regfw.landscape.draw` draws it (contour, 3-D surface, 1-D curve);
- :func:`loss_grid` is the batched evaluator alone, for any plane (manual-gd's grids use it);
- :func:`landscape_of_run` does it all for a stored run and logs the result into it;
- :class:`Snapshots` is the ``on_epoch_end`` callback behind ``regfw run --snapshots K``.

Nothing here imports torch or matplotlib until it is called.
"""

from regfw.landscape.compute import Landscape, compute
from regfw.landscape.plane import Plane, make_plane, params_plane, pca_plane, random_plane
from regfw.landscape.record import landscape_of_run
from regfw.landscape.snapshots import Snapshots


def loss_grid(model, loss_fn, x, y, plane, axes):
    """The loss over ``axes`` (one or two coordinate lists) of ``plane``: see :mod:`regfw.landscape.evaluate`."""
    from regfw.landscape.evaluate import loss_grid as grid

    return grid(model, loss_fn, x, y, plane, axes)


__all__ = ["Landscape", "Plane", "Snapshots", "compute", "landscape_of_run", "loss_grid", "make_plane",
           "params_plane", "pca_plane", "random_plane"]
