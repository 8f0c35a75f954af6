"""``regfw resume RUN_ID``: continue an interrupted run from its last checkpoint."""

from __future__ import annotations

import sys

import click

from regfw.interrupts import Interrupted, sigterm_as_interrupt


@click.command()
@click.argument("run_id")
@click.option("--tracking-uri", metavar="URI", help="MLflow store (default: $MLFLOW_TRACKING_URI or ./mlruns).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), metavar="N",
              help="Checkpoint interval from here on (default: the run's own).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--nproc", type=click.IntRange(min=1), metavar="N",
              help="Processes for a data-parallel run (default and only choice: as many as it was trained on).")
def resume(run_id, tracking_uri, checkpoint_every, quiet, nproc):
    """Continue RUN_ID (a run started with --checkpoint-every) from its last checkpoint.

    The same MLflow run goes on: same parameters, the metrics up to the checkpoint kept, the
    rest recomputed. Its configuration is read back from the run, so nothing needs repeating.
    """
    from regfw.checkpoint import load_resume
    from regfw.cli.common import one_line_plugin_errors
    from regfw.cli.progress import Reporter
    from regfw.cli.run import launch_and_exit, print_summary
    from regfw.plugins import get_plugins
    from regfw.runner import execute
    from regfw.runs.queries import full_run_id
    from regfw.store import MlflowTracker, tracking_uri as resolve_uri

    plugins = get_plugins()
    one_line_plugin_errors(plugins)
    uri = resolve_uri(tracking_uri)
    run_id = full_run_id(uri, run_id)
    found = load_resume(uri, run_id)
    config = found.config(plugins.registry)
    from regfw import distributed

    parallel = distributed.from_env()  # None unless torchrun started this process
    world = distributed.resume_world(found.tags, run_id, nproc, parallel)  # another number: one-line error
    if world > 1 and parallel is None:  # a data-parallel run continues on as many processes, via torchrun
        launch_and_exit(world, config)
    tracker = MlflowTracker(uri, found.experiment_name)
    reporter = Reporter("quiet" if quiet else "auto")
    if not quiet and (parallel is None or parallel.leader):
        click.echo(f"resuming run {run_id} ({config.experiment}) at epoch {found.epoch + 1} of "
                   f"{config.train['epochs']}", err=True)
    try:
        with sigterm_as_interrupt():
            outcome = execute(config, plugins, tracker, run_name=run_id, reporter=reporter,
                              checkpoint_every=checkpoint_every or found.every, resume=found, parallel=parallel)
    except (Interrupted, KeyboardInterrupt) as exc:
        click.echo("regfw: error: interrupted before the run resumed", err=True)
        sys.exit(getattr(exc, "exit_code", 130))
    if parallel is not None:  # only rank 0 speaks for the run
        parallel.close(clean=outcome.status == "FINISHED")
        if not parallel.leader:
            sys.exit(outcome.exit_code)
    if not quiet:
        print_summary(outcome, config, tracker)
    if outcome.error:
        click.echo(f"regfw: error: {outcome.error} (run {outcome.run_id} marked {outcome.status})", err=True)
    sys.exit(outcome.exit_code)


COMMANDS = [resume]
