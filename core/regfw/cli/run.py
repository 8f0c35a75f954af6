"""``regfw run``: train one experiment and record it in MLflow."""

from __future__ import annotations

import sys

import click

from regfw.cli.common import (from_option, one_line_plugin_errors, override_options, resolve_from_options, starting_point,
                              warn_beyond_cores)
from regfw.errors import RegfwError
from regfw.interrupts import Interrupted, sigterm_as_interrupt


def print_summary(outcome, config, tracker) -> None:
    from regfw.figures import figure

    status = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "was interrupted"}[outcome.status]
    click.echo(f"{config.experiment} {status} after {outcome.history.epochs_done} epochs "
               f"in {outcome.seconds:.2f} s on {outcome.device}")
    for key, value in outcome.summary.items():
        if key.startswith("final_") or key in ("optimum_loss", "excess_loss"):
            click.echo(f"  {key:<22} {figure(value)}")
    if outcome.learned:
        click.echo("  learned: " + "  ".join(f"{k}={figure(v)}" for k, v in outcome.learned.items()))
    if outcome.run_id:
        from regfw.cli.ui_link import where_to_look

        click.echo(f"  run {outcome.run_id} in {tracker.uri}")
        click.echo(f"  {where_to_look(tracker.uri, tracker.experiment_id, outcome.run_id)}")


@click.command()
@from_option
@override_options
@click.option("--experiment-name", metavar="NAME", help="MLflow experiment (default: the regfw experiment's name).")
@click.option("--run-name", metavar="NAME", help="MLflow run name (default: experiment plus what you changed).")
@click.option("--tracking-uri", metavar="URI", help="MLflow store (default: $MLFLOW_TRACKING_URI or ./mlruns).")
@click.option("--no-track", is_flag=True, help="Do not record the run in MLflow.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), metavar="N",
              help="Save a checkpoint in the run every N epochs; continue it with `regfw resume RUN_ID`.")
@click.option("--nproc", type=click.IntRange(min=1), metavar="N",
              help="Train one run on N local processes with DistributedDataParallel (started through torchrun); "
                   "--batch-size stays the global batch. See docs/scaling.md.")
@click.option("--snapshots", type=click.IntRange(min=2), metavar="K",
              help="Keep K parameter snapshots along training (snapshots.pt): the path `regfw landscape` draws.")
@click.option("--landscape", is_flag=True, help="At the end, draw the run's loss landscape as `regfw landscape` does.")
@click.option("--sweep", is_flag=True, help="A --set with several values (optimizer.lr=0.01,0.1) makes a sweep, as `regfw sweep`.")
@click.option("--vectorize", is_flag=True, help="With --sweep: train compatible points as one stacked program.")
@click.pass_context
def run(ctx, **kwargs):
    """Train EXPERIMENT and record the run in MLflow.

    \b
    Examples:
      regfw run linear
      regfw run linear --device cuda --epochs 2000
      regfw run linear --optimizer adam --set optimizer.lr=0.1
      regfw run --from 3f2a9c1d --set optimizer.lr=0.05
    """
    from regfw import distributed

    nproc = kwargs.pop("nproc")
    if kwargs["sweep"] and (nproc or distributed.launched()):
        raise RegfwError("--sweep trains many runs; data-parallel (--nproc, torchrun) trains one")
    if nproc and distributed.launched():
        raise RegfwError("--nproc starts torchrun itself; under torchrun leave it out")
    if kwargs["vectorize"] and not kwargs["sweep"]:
        raise RegfwError("--vectorize goes with --sweep (one run has nothing to stack)")
    snapshots, landscape = kwargs.pop("snapshots"), kwargs.pop("landscape")
    if kwargs["sweep"] and (snapshots or landscape):
        raise RegfwError("--snapshots and --landscape go with one run, not --sweep")
    if kwargs.pop("sweep"):
        from regfw.cli.sweep import sweep_from_run

        return sweep_from_run(ctx, kwargs)
    from regfw.plugins import get_plugins

    plugins = get_plugins()
    one_line_plugin_errors(plugins)
    start = starting_point(kwargs)
    config = resolve_from_options(plugins, kwargs, start)
    if kwargs["checkpoint_every"] and kwargs["no_track"]:
        raise RegfwError("--checkpoint-every stores checkpoints in the MLflow run; it cannot be used with --no-track")
    epochs = config.train["epochs"]
    if snapshots and snapshots > epochs + 1:  # the states are epochs 0..E: more would repeat them
        raise RegfwError(f"--snapshots {snapshots} is more than the {epochs + 1} parameter states a {epochs}-epoch "
                         f"run has (epoch 0 to {epochs}); give at most {epochs + 1}")
    if (snapshots or landscape) and kwargs["no_track"]:
        raise RegfwError("--snapshots and --landscape are stored in the MLflow run; they cannot be used with --no-track")
    from regfw.sizing import check_model_fits

    warn_beyond_cores([config])

    check_model_fits(config, plugins.registry)  # on the meta device: a size no memory holds is refused now
    from regfw.cli.progress import Reporter
    from regfw.naming import default_run_name
    from regfw.runner import execute
    from regfw.store import MlflowTracker, NullTracker, tracking_uri

    if kwargs["no_track"]:
        tracker = NullTracker()
    else:
        from regfw.store import tags as T

        tracker = MlflowTracker(tracking_uri(kwargs["tracking_uri"]), kwargs["experiment_name"] or config.experiment,
                                extra_tags={T.STARTED_FROM: start.run_id} if start is not None else None)
    run_name = kwargs["run_name"] or default_run_name(plugins.registry, config)
    if nproc:  # the input is checked above, once; each process runs this command without --nproc
        launch_and_exit(nproc, config)
    parallel = distributed.from_env()  # None unless torchrun started this process
    reporter = Reporter("quiet" if kwargs["quiet"] else "auto")
    try:
        with sigterm_as_interrupt():
            outcome = execute(config, plugins, tracker, run_name=run_name, reporter=reporter,
                              checkpoint_every=kwargs["checkpoint_every"], parallel=parallel, snapshots=snapshots)
    except (Interrupted, KeyboardInterrupt) as exc:  # before the run existed: nothing to mark
        click.echo("regfw: error: interrupted before the run started", err=True)
        sys.exit(getattr(exc, "exit_code", 130))
    if parallel is not None:  # only rank 0 speaks for the run; another rank says why it failed
        parallel.close(clean=outcome.status == "FINISHED")
        if not parallel.leader:
            if outcome.status == "FAILED":
                click.echo(f"regfw: error: process {parallel.rank}: {outcome.error}", err=True)
            sys.exit(outcome.exit_code)
    if not kwargs["quiet"]:
        print_summary(outcome, config, tracker)
    if outcome.error:
        click.echo(f"regfw: error: {outcome.error}" + (f" (run {outcome.run_id} marked {outcome.status})" if outcome.run_id and tracker.gone is None else ""),
                   err=True)
    if landscape and outcome.status == "FINISHED":
        from regfw.cli.landscape import draw_for_run

        draw_for_run(plugins, tracker.uri, outcome.run_id, quiet=kwargs["quiet"])
    sys.exit(outcome.exit_code)


def launch_and_exit(nproc: int, config=None) -> None:
    """Run this command line, without --nproc, on ``nproc`` processes through torchrun, once
    ``config`` is known to be one that every process can train (else one line, nothing started)."""
    from regfw import distributed

    if config is not None:
        distributed.check_launch(config, nproc)
    code, ended = distributed.launch(nproc, distributed.worker_argv(sys.argv[1:]))
    if ended:  # the processes printed their own errors; this says how each one ended
        click.echo(f"regfw: error: {ended}", err=True)
    sys.exit(code)


COMMANDS = [run]
