"""``regfw sweep``: a grid of runs under one MLflow parent run."""

from __future__ import annotations

import sys

import click

from regfw.cli.common import (FLAG_KEYS, FLAG_OPTIONS, SWAPS, from_option, layer_start, one_line_plugin_errors,
                              override_options, starting_point, warn_beyond_cores)
from regfw.errors import RegfwError

from regfw.sweep.grid import DEFAULT_MAX_POINTS  # cheap: the grid module imports neither torch nor mlflow

SET_HELP = ("Override a value; several values make a sweep axis: optimizer.lr=0.001,0.01,0.1. "
            "List-typed params take a comma list as ONE value: separate their axis values with ';' "
            "(model.hidden='64;256;64,64') or write bracketed lists ([64],[64,64]). Repeatable.")


def print_point(result, point, total: int) -> None:
    """One line per finished point: index, status, run name, final loss (named: test or train), time, reason."""
    key = next((k for k in ("final_test_loss", "final_train_loss") if result.summary.get(k) is not None), None)
    from regfw.figures import figure

    shown = f"  {key} {figure(result.summary[key])}" if key is not None else ""
    width = len(str(total))
    line = f"[{result.index + 1:>{width}}/{total}] {result.status:<8} {point.run_name}{shown}  ({result.seconds:.1f} s)"
    if result.error:
        line += f"  {result.error}"
    click.echo(line)


def _numbers(indices) -> str:
    return ",".join(str(i + 1) for i in indices)


def print_plan(plan, points) -> None:
    """--vectorize: the buckets, then one line per reason that sends points the normal way."""
    sizes = [len(b) for b in plan.buckets]
    click.echo(f"vectorized: {sum(sizes)} point{'s' * (sum(sizes) != 1)} in {len(sizes)} "
               f"bucket{'s' * (len(sizes) != 1)}" + (f" of {', '.join(map(str, sizes))}" if sizes else ""))
    for reason, positions in plan.reasons().items():
        print_fallback([points[p].index for p in positions], reason, points)


def print_fallback(indices, reason: str, points) -> None:
    click.echo(f"  not vectorized, point{'s' * (len(indices) != 1)} {_numbers(indices)}: {reason}")


def _grid_from_options(plugins, kwargs: dict, start=None):
    from regfw.config import load_config_file
    from regfw.sweep import build_grid

    config_path = kwargs.pop("config_path")
    max_points = kwargs.pop("max_points", None)
    experiment, file_values = layer_start(start, kwargs.pop("experiment"),
                                          load_config_file(config_path) if config_path else None)
    return build_grid(
        plugins.registry,
        experiment,
        sets=kwargs.pop("sets"),
        seeds=kwargs.pop("seeds"),
        config_file=file_values,
        swaps={part: kwargs.pop(part) for part in SWAPS},
        flags={FLAG_KEYS[name]: kwargs.pop(name) for name in FLAG_KEYS},
        flag_options=FLAG_OPTIONS,
        max_points=max_points or DEFAULT_MAX_POINTS,
    )


@click.command()
@from_option
@override_options
@click.option("--seeds", metavar="0,1,2|0-4", help="Repeat every point with these seeds (a sweep axis).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Points run at once, each in its own process.")
@click.option("--experiment-name", metavar="NAME", help="MLflow experiment (default: the regfw experiment's name).")
@click.option("--tracking-uri", metavar="URI", help="MLflow store (default: $MLFLOW_TRACKING_URI or ./mlruns).")
@click.option("--no-track", is_flag=True, help="Record nothing in MLflow: each point's result in the terminal only.")
@click.option("--dry-run", is_flag=True, help="Print the points and their run names; run nothing.")
@click.option("--max-points", type=click.IntRange(min=1), metavar="N",
              help=f"Run a grid of up to N points (default {DEFAULT_MAX_POINTS}; a bigger grid is refused with its size).")
@click.option("--vectorize", is_flag=True,
              help="Train compatible points together as one stacked program (docs/comparing.md, 'When points batch').")
@click.option("--max-bucket", type=click.IntRange(min=1), metavar="N",
              help="With --vectorize: at most N points per stacked program (default: a memory budget).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: here (--jobs processes); ray: every point (or --vectorize bucket) a Ray task "
                   "(docs/scaling.md, 'Sweeps on Ray').")
@click.option("--ray-address", metavar="ADDRESS",
              help="With --backend ray: the cluster (auto, HOST:PORT, ray://HOST:10001; default $RAY_ADDRESS, "
                   "else a local Ray instance).")
@click.option("--cpus-per-point", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="With --backend ray: CPUs Ray reserves for each point.")
@click.option("--gpus-per-point", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="With --backend ray: GPUs Ray gives each point (1 for a CUDA point).")
@click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --backend ray: run a point again up to N times when its worker dies.")
@click.option("--ray-runtime-env", metavar="FILE",
              help="With --backend ray: Ray runtime_env (YAML/JSON: pip, working_dir, env_vars) for the workers.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def sweep(**kwargs):
    """Run EXPERIMENT over a grid: one MLflow parent run, one child run per point.

    The grid is the cartesian product of every --set with several values and --seeds.
    A failed point is marked FAILED and the sweep goes on; the exit code is the number
    of failed points (0: all finished).

    \b
    Examples:
      regfw sweep linear --set optimizer.lr=0.001,0.01,0.1 --seeds 0,1
      regfw sweep linear --model mlp --set 'model.hidden=8;16,16' --epochs 200 --jobs 2
      regfw runs linear --group-by optimizer.lr      # then compare, averaged over seeds
    """
    from regfw.plugins import get_plugins

    plugins = get_plugins()
    one_line_plugin_errors(plugins)
    start = starting_point(kwargs)
    grid = _grid_from_options(plugins, kwargs, start)
    quiet = kwargs["quiet"]
    total = len(grid.points)
    if kwargs["dry_run"]:
        from regfw.sweep import sweep_name

        click.echo(f"{sweep_name(grid)}: {total} point{'s' * (total != 1)}")
        for point in grid.points:
            click.echo(f"  [{point.index + 1}] {point.run_name}")
        return

    from regfw.cli.progress import Reporter
    from regfw.store import default_tracking_uri, tracking_uri
    from regfw.store import tags as T
    from regfw.sweep import run_sweep

    ray = _ray_options(kwargs, quiet)
    check_sweep_fits(grid.points, plugins.registry)  # before the parent run: a mismatch every point would show
    warn_beyond_cores(p.config for p in grid.points)
    if kwargs["no_track"] and ray is not None:
        raise RegfwError("--no-track goes with --backend local: Ray points hand their results back through the store")
    if kwargs["no_track"] and (kwargs["tracking_uri"] or kwargs["experiment_name"]):
        given = "--tracking-uri" if kwargs["tracking_uri"] else "--experiment-name"
        raise RegfwError(f"--no-track records nothing; {given} says where to record: drop one")
    uri = None if kwargs["no_track"] else tracking_uri(kwargs["tracking_uri"])
    experiment_name = kwargs["experiment_name"] or grid.experiment
    if not quiet:
        jobs = min(kwargs["jobs"], total)
        how = f"in {jobs} processes" if jobs > 1 else "in this process"
        how = ("stacked where they can be, " if kwargs.get("vectorize") else "") + how
        how = f"as Ray tasks on {ray.where()}" if ray is not None else how
        click.echo(f"sweep of {total} point{'s' * (total != 1)} over "
                   f"{', '.join(a.key for a in grid.axes) or 'nothing'}, {how}")

    def on_result(result, point):
        if not quiet:
            print_point(result, point, total)

    reporter = Reporter("bar") if not quiet and sys.stderr.isatty() and kwargs["jobs"] == 1 else None
    if kwargs["max_bucket"] and not kwargs["vectorize"]:
        raise RegfwError("--max-bucket goes with --vectorize")
    outcome = run_sweep(grid, uri, experiment_name, jobs=kwargs["jobs"], reporter=reporter, on_result=on_result,
                        vectorize=kwargs["vectorize"], max_bucket=kwargs["max_bucket"],
                        on_plan=None if quiet else lambda plan: print_plan(plan, grid.points),
                        on_fallback=None if quiet else lambda indices, why: print_fallback(indices, why, grid.points),
                        ray=ray, tags={T.STARTED_FROM: start.run_id} if start is not None else None)
    if not quiet:
        done = sum(r.status == "FINISHED" for r in outcome.results)
        click.echo(f"sweep {outcome.sweep_id} {outcome.status.lower()}: {done} finished, {outcome.failed} failed"
                   + (f", {outcome.not_run} not run" if outcome.not_run else "")
                   + (", not recorded" if uri is None else ""))
    if not quiet and uri is not None:
        where = "" if uri == default_tracking_uri() else f" --tracking-uri '{uri}'"
        name = f"'{experiment_name}'" if " " in experiment_name else experiment_name
        click.echo(f"  parent run {outcome.parent_run_id} in {uri}")
        click.echo(f"  table: regfw runs {name} --sweep {outcome.sweep_id}{where}")
        if grid.axes and any(a.key == "seed" for a in grid.axes) and len(grid.axes) > 1:
            group = " ".join(f"--group-by {a.key}" for a in grid.axes if a.key != "seed")
            click.echo(f"  over seeds: regfw runs {name} --sweep {outcome.sweep_id} {group}{where}")
        from regfw.cli.ui_link import where_to_look

        click.echo(f"  {where_to_look(uri, outcome.experiment_id, outcome.parent_run_id)}")
    if outcome.failed and outcome.status != "KILLED":
        click.echo(f"regfw: error: {outcome.failed} of {total} sweep points failed{why_failed(outcome.results)}", err=True)
    elif outcome.status == "KILLED":
        click.echo("regfw: error: sweep interrupted", err=True)
    sys.exit(outcome.exit_code)


def why_failed(results) -> str:
    """The reason on the sweep's error line: the one line that stays under -q. One reason shared by
    every failed point is said once; else the first point's, and how many others there are."""
    failed = [r for r in results if r.status == "FAILED"]
    reasons = [r.error for r in failed if r.error]
    if not reasons:
        return ""
    if len(set(reasons)) == 1:
        return f"{'' if len(failed) == 1 else ', all'}: {reasons[0]}"
    first = next(r for r in failed if r.error)
    others = sum(r.error != first.error for r in failed)
    return (f"; point {first.index + 1}: {first.error} ({others} more failed for another reason: "
            "`regfw runs` shows each)")


def check_sweep_fits(points, registry) -> None:
    """A sweep's points before any run exists: the first point's model must build for its dataset
    (a mismatch it shows, every point shows: the sweep would end "N of N points failed"), and no
    point's model may be bigger than its device. A later point its plugin refuses for its own
    values still runs and fails alone, with its reason in its run."""
    from regfw.build import build_data, seed_everything
    from regfw.sizing import TooBig, check_model_fits

    seen = set()
    for position, point in enumerate(points):
        config = point.config
        key = (config.model.name, repr(sorted(config.model.params.items())), config.device)
        if key in seen:
            continue
        seen.add(key)
        data = None
        if position == 0:  # built as its run builds it, data first: the same error comes first
            seed_everything(config.seed)
            data = build_data(config, registry)
        try:
            check_model_fits(config, registry, what=f"sweep point {point.index + 1}: ", data=data)
        except TooBig:
            raise
        except RegfwError:
            if position == 0:
                raise


RAY_ONLY = {"ray_address": "--ray-address", "cpus_per_point": "--cpus-per-point", "gpus_per_point": "--gpus-per-point",
            "retries": "--retries", "ray_runtime_env": "--ray-runtime-env"}


def _ray_options(kwargs: dict, quiet: bool):
    """``--backend ray``'s options (None for the local backend); each misuse is one line."""
    if kwargs["backend"] != "ray":
        given = click.get_current_context().get_parameter_source
        for name, option in RAY_ONLY.items():
            if given(name) not in (None, click.core.ParameterSource.DEFAULT):
                raise RegfwError(f"{option} goes with --backend ray")
        return None
    if kwargs["jobs"] > 1:
        raise RegfwError("--jobs is for --backend local; on Ray, the free CPUs and --cpus-per-point set how many "
                         "points run at once")
    import math

    for name in ("cpus_per_point", "gpus_per_point"):  # click's FloatRange lets nan and inf through
        if not math.isfinite(kwargs[name]):
            raise RegfwError(f"--{name.replace('_', '-')} must be a finite number of CPUs or GPUs, got {kwargs[name]} "
                             "(before Ray is started)")
    from regfw.training.ray_cluster import RayOptions, load_runtime_env

    env = load_runtime_env(kwargs["ray_runtime_env"]) if kwargs["ray_runtime_env"] else None
    return RayOptions(kwargs["ray_address"], kwargs["cpus_per_point"], kwargs["gpus_per_point"], kwargs["retries"],
                      env, announce=None if quiet else click.echo)


RUN_ONLY = {"run_name": "--run-name", "checkpoint_every": "--checkpoint-every"}


def sweep_from_run(ctx: click.Context, kwargs: dict):
    """``regfw run ... --sweep``: the same grid as ``regfw sweep`` (seeds through --set seed=0,1)."""
    for name, option in RUN_ONLY.items():
        if kwargs.get(name):
            raise RegfwError(f"{option} does not go with --sweep (each point gets its own run)")
    known = {p.name for p in sweep.params}
    args = {k: v for k, v in kwargs.items() if k in known}
    args.update(seeds=None, jobs=kwargs.get("jobs") or 1, dry_run=False, max_points=None,
                vectorize=bool(kwargs.get("vectorize")), max_bucket=None)
    return ctx.invoke(sweep, **args)


for _param in sweep.params:
    if _param.name == "sets":
        _param.help = SET_HELP

COMMANDS = [sweep]
