"""Pictures of a :class:`regfw.landscape.compute.Landscape`: contour map, 3-D surface, 1-D curve.

Written as SVG when the path ends in ``.svg`` (what regfw logs, like a run's other charts: sharp
at any zoom in MLflow's artifact view), else in the format its suffix names. The legend sits
beside the data, never over it; the path's end is an open square drawn over the final point's
star, so both show when they coincide (a path ends where training ended).
"""

from __future__ import annotations

from pathlib import Path

DPI = 80  # for a raster format only
LEGEND_FACE = "#440154"  # viridis at its lowest


def _save(fig, path: Path) -> Path:
    """The figure at ``path``, cropped to what is drawn (the legend outside the axes included);
    an SVG keeps its text as text and is the same bytes for the same picture."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "regfw"}):
        fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Date": None} if str(path).endswith(".svg") else None)
    return path


def _legend_beside(ax) -> None:
    """The legend below the axes, outside the data (upper left covered the start of the path)."""
    if ax.get_legend_handles_labels()[0]:
        # On the colour map's darkest shade, as the marks are seen on the data: the path is white.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, facecolor=LEGEND_FACE,
                  edgecolor=LEGEND_FACE, labelcolor="white", framealpha=1)


def _levels(values, scale: str = "auto"):
    """Contour levels, logarithmic (``scale='auto'``) when the loss spans more than two decades: a
    valley's floor and walls are then both visible."""
    import numpy as np

    values = np.where(np.isfinite(values), values, np.nan)
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if scale == "log" or (scale == "auto" and lo > 0 and hi / lo > 100):
        return np.geomspace(lo, hi, 30), True
    return np.linspace(lo, hi, 30) if hi > lo else 10, False


def _marks(ax, ls, three_d: bool = False, zof=None):
    """The path (start and end marked), the final point and the least-squares optimum."""
    def put(coords, z, *args, **kwargs):
        if three_d:
            ax.plot(*[[c] if not hasattr(c, "__len__") else c for c in (*coords, z)], *args, **kwargs)
        else:
            ax.plot(*coords, *args, **kwargs)

    if ls.path and ls.path["coords"]:
        pts = list(zip(*ls.path["coords"]))
        zs = zof(ls.path["loss"]) if zof else None
        put(pts, zs, "-", color="white" if not three_d else "black", lw=1.2, marker=".", ms=4, label="path")
        first, last = ls.path["coords"][0], ls.path["coords"][-1]
        put(first, zof([ls.path["loss"][0]])[0] if zof else None, "o", color="limegreen", ms=8,
            label=f"start (epoch {ls.path['epochs'][0]})")
        # An open square bigger than the star, above it: the end and the final point often coincide.
        put(last, zof([ls.path["loss"][-1]])[0] if zof else None, "s", color="orange", ms=15, mfc="none", mew=2,
            zorder=5, label=f"end (epoch {ls.path['epochs'][-1]})")
    if ls.final is not None:
        put(ls.final, zof([ls.final_loss])[0] if zof else None, "*", color="red", ms=13,
            label=f"final ({ls.final_loss:.4g})")
    if ls.optimum:
        where = "" if ls.optimum["off_plane"] < 1e-6 else ", projected"
        inside = all(a[0] <= c <= a[-1] for a, c in zip(ls.axes, ls.optimum["coords"]))
        where += "" if inside else ", outside the picture"
        put(ls.optimum["coords"], zof([ls.optimum["loss"]])[0] if zof else None, "x", color="cyan", ms=10, mew=2,
            label=f"least squares ({ls.optimum['loss']:.4g}{where})")


def _limits(ax, ls):
    ax.set_xlim(ls.axes[0][0], ls.axes[0][-1])
    if len(ls.axes) > 1:
        ax.set_ylim(ls.axes[1][0], ls.axes[1][-1])


def contour_figure(ls, scale: str = "auto"):
    """The contour map as a matplotlib figure (:func:`contour` writes it)."""
    import numpy as np
    from matplotlib.colors import LogNorm

    from regfw.plots import pyplot

    plt = pyplot()
    values = np.array(ls.values, dtype=float)
    values[~np.isfinite(values)] = np.nan  # an overflow far out on the grid: left blank
    levels, log = _levels(values, scale)
    fig, ax = plt.subplots(figsize=(6.4, 5))
    filled = ax.contourf(ls.axes[0], ls.axes[1], values, levels=levels, cmap="viridis",
                         norm=LogNorm() if log else None)
    ax.contour(ls.axes[0], ls.axes[1], values, levels=levels[::3] if log else 10, colors="k", linewidths=0.3)
    fig.colorbar(filled, ax=ax, label=ls.loss_name + (" (log scale)" if log else ""),
                 format="%.3g")
    _marks(ax, ls)
    _limits(ax, ls)
    ax.set(xlabel=ls.labels[0], ylabel=ls.labels[1], title=ls.title)
    _legend_beside(ax)
    return fig


def surface_figure(ls, scale: str = "auto"):
    """The 3-D surface as a matplotlib figure (:func:`surface` writes it)."""
    import numpy as np

    from regfw.plots import pyplot

    plt = pyplot()
    values = np.array(ls.values, dtype=float)
    values[~np.isfinite(values)] = np.nan
    _, log = _levels(values, scale)
    z = np.log10(values) if log else values

    floor = float(values[values > 0].min()) if log else 0.0

    def zof(losses):  # a point at zero loss (an exact fit) sits on the picture's floor
        return list(np.log10(np.maximum(losses, floor))) if log else list(losses)

    u, v = np.meshgrid(ls.axes[0], ls.axes[1])
    fig = plt.figure(figsize=(6, 4.8))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(u, v, z, cmap="viridis", alpha=0.85, linewidth=0, rcount=30, ccount=30)  # smaller files
    _marks(ax, ls, three_d=True, zof=zof)
    ax.set(xlabel=ls.labels[0], ylabel=ls.labels[1], zlabel=("log10 " if log else "") + ls.loss_name, title=ls.title)
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # below the whole figure: a 3-D box's axis labels reach beyond the box
        fig.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=2, frameon=False)
    return fig


def curve_figure(ls):
    """The loss along the first direction (the plane's line through the final point), as a figure."""
    import numpy as np

    from regfw.plots import pyplot

    plt = pyplot()
    values = np.array(ls.values)
    values = values if values.ndim == 1 else values[len(values) // 2]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(ls.axes[0], values, marker=".", ms=3, label=ls.loss_name)  # linear, as document 002 draws it
    if ls.final is not None:
        ax.plot(ls.final[0], ls.final_loss, "*", color="red", ms=13, label=f"final ({ls.final_loss:.4g})")
    if ls.path and ls.path["coords"]:
        xs = [c[0] for c in ls.path["coords"]]
        ax.plot(xs, ls.path["loss"], ".-", color="gray", ms=4, lw=0.8, label="path")
        ax.plot(xs[0], ls.path["loss"][0], "o", color="limegreen", ms=8, label=f"start (epoch {ls.path['epochs'][0]})")
    if ls.optimum:
        ax.plot(ls.optimum["coords"][0], ls.optimum["loss"], "x", color="cyan", ms=10, mew=2,
                label=f"least squares ({ls.optimum['loss']:.4g})")
    ax.set_xlim(ls.axes[0][0], ls.axes[0][-1])
    ax.set(xlabel=ls.labels[0], ylabel=ls.loss_name, title=ls.title)
    _legend_beside(ax)
    return fig


def _written(fig, path) -> Path:
    from regfw.plots import pyplot

    try:
        return _save(fig, Path(path))
    finally:
        pyplot().close(fig)


def contour(ls, path: Path, scale: str = "auto") -> Path:
    return _written(contour_figure(ls, scale), path)


def surface(ls, path: Path, scale: str = "auto") -> Path:
    return _written(surface_figure(ls, scale), path)


def curve(ls, path: Path) -> Path:
    return _written(curve_figure(ls), path)
