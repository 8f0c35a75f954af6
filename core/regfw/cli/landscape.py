"""``regfw landscape RUN_ID``: the loss surface around a run's solution, and the path it took."""

from __future__ import annotations

import click

from regfw.landscape.plane import KINDS


def landscape_options(func):
    """The options `regfw landscape` and `regfw run --landscape` share."""
    for decorator in reversed([
        click.option("--grid", type=click.IntRange(3, 401), default=41, show_default=True, metavar="N",
                     help="Points per axis."),
        click.option("--span", type=float, callback=_check_span, metavar="S",
                     help="Half-width of each axis around the final point (default: the path with a margin, "
                          "±max(1, |θ|) for params, ±1 for random)."),
        click.option("--directions", type=click.Choice(KINDS), help="params: the model's one or two scalars; "
                     "random: filter-normalized (Li et al. 2018); pca: the path's principal directions "
                     "(needs --snapshots). Default: params when the model has one or two scalars, else pca "
                     "when the run kept snapshots, else random."),
        click.option("--1d", "one_d", is_flag=True, help="The loss along the first direction only."),
        click.option("--3d", "three_d", is_flag=True, help="Also draw a 3-D surface."),
        click.option("--out", metavar="DIR", help="Also write the pictures and grid values into DIR."),
    ]):
        func = decorator(func)
    return func


def _check_span(ctx, param, span: float | None) -> float | None:
    """A span moves float32 parameters: it must be a finite positive number that float32 holds
    (nan, inf or 1e308 drew numpy warnings and then failed in matplotlib)."""
    from regfw.errors import RegfwError
    from regfw.params import LIMITS

    if span is not None and not (0 < span <= LIMITS["float32"]):  # False for nan as well
        raise RegfwError(f"--span must be a finite number above 0 that fits float32 (at most "
                         f"{LIMITS['float32']:.4g}), got {span}")
    return span


def prepare_out(out: str | None) -> None:
    """Create ``--out`` before anything is computed, so a file in its place or a folder that cannot
    be made is one line at once, not an "unexpected" error after the landscape was drawn."""
    import os
    from pathlib import Path

    from regfw.errors import RegfwError

    if out is None:
        return
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise RegfwError(f"--out {out} is a file; give a folder to write the pictures into")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegfwError(f"--out {out}: cannot create the folder: {exc.strerror or type(exc).__name__}") from None
    if not os.access(target, os.W_OK | os.X_OK):
        raise RegfwError(f"--out {out}: the folder is not writable")


def report(written, uri: str, run_id: str) -> None:
    from regfw.figures import figure

    ls = written.landscape
    shape = "x".join(str(len(a)) for a in ls.axes)
    click.echo(f"{ls.kind} landscape of run {run_id}: {shape} points in {ls.seconds:.2f} s, loss "
               f"{_range(ls.values)}, final {figure(ls.final_loss)}" + (f"; {ls.note}" if ls.note else ""))
    if ls.optimum:
        click.echo(f"  least-squares optimum {figure(ls.optimum['loss'])}")
    for i, name in enumerate(written.files):
        click.echo(f"  artifact landscape/{name}" + (f"  (and {written.copies[i]})" if written.copies else ""))


def draw_for_run(plugins, uri: str, run_id: str, *, quiet: bool = False, **options) -> None:
    """Compute, draw and log the landscape of a stored run, then say what was written."""
    from regfw.landscape import landscape_of_run

    written = landscape_of_run(uri, run_id, plugins.registry, **options)
    if not quiet:
        report(written, uri, run_id)


def _range(values) -> str:
    flat = [v for row in values for v in (row if isinstance(row, list) else [row])]
    from regfw.figures import figure

    return f"{figure(min(flat))} .. {figure(max(flat))}"


@click.command()
@click.argument("run_id")
@landscape_options
@click.option("--seed", type=int, help="Seed of the random directions (default: the run's seed).")
@click.option("--tracking-uri", metavar="URI", help="MLflow store (default: $MLFLOW_TRACKING_URI or ./mlruns).")
def landscape(run_id, grid, span, directions, one_d, three_d, out, seed, tracking_uri):
    """Draw the training loss around RUN_ID's final parameters, and the path it took.

    The run is rebuilt from its stored configuration and weights; the contour plot (with --3d a
    surface, with --1d a curve) and the grid values are logged under the run's landscape/ artifacts.

    \b
    Examples:
      regfw landscape RUN_ID                       # manual-gd: the loss over w, as in document 002
      regfw run quadratic-param --snapshots 50     # then: its valley and the path along it
      regfw landscape RUN_ID --directions pca --3d
      regfw landscape RUN_ID --directions random --grid 21 --out pictures/
    """
    from regfw.cli.common import one_line_plugin_errors
    from regfw.plugins import get_plugins
    from regfw.store import tracking_uri as resolve_uri

    prepare_out(out)
    plugins = get_plugins()
    one_line_plugin_errors(plugins)
    draw_for_run(plugins, resolve_uri(tracking_uri), run_id, directions=directions, grid=grid, span=span,
                 one_d=one_d, three_d=three_d, out=out, seed=seed)


COMMANDS = [landscape]
