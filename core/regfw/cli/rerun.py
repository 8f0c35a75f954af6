"""``regfw rerun RUN_ID [--verify]``: train a recorded run again from its own record, and say
whether it reproduced: bit for bit, or where it first differs and what in the environment may be why."""

from __future__ import annotations

import sys

import click

from regfw.interrupts import Interrupted, sigterm_as_interrupt

VECTORIZED_TOLERANCE = 1e-5  # the vectorized path's stated tolerance (docs/comparing.md): CPU float32, relative
DIFFERS_EXIT = 4  # --verify found a difference (1 stays "could not run", 3 "diverged")


@click.command()
@click.argument("run_id")
@click.option("--verify", is_flag=True,
              help="Afterwards compare every metric history, the summary and the final parameters with the original's; "
                   f"exit {DIFFERS_EXIT} on a difference.")
@click.option("--tolerance", type=click.FloatRange(min=0), metavar="REL",
              help="With --verify: relative tolerance (default: exact, bit for bit; a vectorized sweep point: "
                   f"{VECTORIZED_TOLERANCE:g}).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Change a value before rerunning, e.g. dataset.path=moved.csv (repeatable).")
@click.option("--tracking-uri", metavar="URI", help="MLflow store holding the run (default: $MLFLOW_TRACKING_URI or ./mlruns).")
@click.option("--experiment-name", metavar="NAME", help="MLflow experiment of the rerun (default: the original's).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="A sweep's parent: points run at once, each in its own process.")
@click.option("--vectorize", is_flag=True, help="A sweep's parent: train compatible points as one stacked program.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="A sweep's parent: where its points run (as `regfw sweep --backend`).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but the verdict and errors.")
def rerun(run_id, verify, tolerance, sets, tracking_uri, experiment_name, jobs, vectorize, backend, quiet):
    """Train RUN_ID again from its own record, as a new run tagged with the run it repeats.

    Before training it prints how this environment differs from the recorded one (versions,
    plugins, git commit and dirty tree, device, threads, the data's fingerprint). A sweep's parent
    run reruns every point of the sweep and gives the verdict per point.

    \b
    Examples:
      regfw rerun 3f2a9c1d --verify
      regfw rerun 3f2a9c1d --verify --tolerance 1e-6
      regfw rerun SWEEP_PARENT_ID --verify --jobs 2
    """
    from regfw.cli.common import one_line_plugin_errors
    from regfw.runs.queries import full_run_id
    from regfw.config import parse_set
    from regfw.plugins import get_plugins
    from regfw.reproduce.record import load_recorded
    from regfw.store import tracking_uri as resolve_uri

    plugins = get_plugins()
    one_line_plugin_errors(plugins)
    uri = resolve_uri(tracking_uri)
    run_id = full_run_id(uri, run_id)
    recorded = load_recorded(uri, run_id)
    pairs = parse_set(sets)
    from regfw.errors import RegfwError

    if recorded.is_sweep:  # not built yet: say so in one line, and how to get the same answer
        raise RegfwError(f"run {run_id} is a sweep's parent run; rerunning a whole sweep is not supported yet: "
                         f"rerun its points one by one (regfw runs --sweep {recorded.tags.get('regfw.sweep_id', '?')})")
    if jobs > 1 or vectorize or backend != "local":
        raise RegfwError("--jobs, --vectorize and --backend go with a sweep's parent run; this run is one run")
    config = recorded.config(plugins.registry, pairs)
    sys.exit(rerun_one(recorded, config, plugins, verify=verify, tolerance=tolerance, experiment_name=experiment_name,
                       quiet=quiet))


def rerun_one(recorded, config, plugins, *, verify, tolerance, experiment_name, quiet) -> int:
    """Train ``config`` as a rerun of ``recorded`` (on as many processes as it had); the exit code."""
    from regfw import distributed
    from regfw.cli.progress import Reporter
    from regfw.cli.run import launch_and_exit, print_summary
    from regfw.reproduce import environment
    from regfw.runner import execute
    from regfw.store import MlflowTracker
    from regfw.store import tags as T

    parallel = distributed.from_env()  # None unless torchrun started this process
    world = recorded.world_size
    if parallel is not None and parallel.world != world:
        from regfw.errors import RegfwError

        raise RegfwError(f"run {recorded.run_id} was trained on {world} process(es), not {parallel.world}; "
                         f"rerun it with `regfw rerun {recorded.run_id}`")
    if world > 1 and parallel is None:  # the same world size: the same shards, the same sums
        launch_and_exit(world)
    speaks = parallel is None or parallel.leader
    tracker = MlflowTracker(recorded.uri, experiment_name or recorded.experiment_name,
                            extra_tags={T.RERUN_OF: recorded.run_id})
    found = {}

    def before_start(tags):
        found["env"] = env = environment.compare(recorded.tags, tags, recorded.params, config.flat_params())
        if speaks and not quiet:
            click.echo(f"rerun of run {recorded.run_id} ({recorded.run_name}, {recorded.status}) in {recorded.uri}")
            for line in environment.table(env):
                click.echo(line)

    reporter = Reporter("quiet" if quiet else "auto")
    try:
        with sigterm_as_interrupt():
            outcome = execute(config, plugins, tracker, run_name=f"{recorded.run_name} (rerun)", reporter=reporter,
                              parallel=parallel, before_start=before_start)
    except (Interrupted, KeyboardInterrupt) as exc:
        click.echo("regfw: error: interrupted before the rerun started", err=True)
        return getattr(exc, "exit_code", 130)
    if parallel is not None:
        parallel.close(clean=outcome.status == "FINISHED")
        if not parallel.leader:
            return outcome.exit_code
    if not quiet:
        print_summary(outcome, config, tracker)
    if outcome.error:
        click.echo(f"regfw: error: {outcome.error} (run {outcome.run_id} marked {outcome.status})", err=True)
    if not verify or outcome.run_id is None:
        return outcome.exit_code
    rel = tolerance
    if rel is None and recorded.vectorized:
        rel = VECTORIZED_TOLERANCE
        click.echo(f"the original trained stacked in a vectorized sweep ({recorded.tags[T.BUCKET]}); this rerun trained "
                   f"alone: compared within the vectorized path's stated relative tolerance {rel:g}")
    verdict = verify_and_tag(recorded, outcome.run_id, rel or 0.0, found.get("env"))
    return outcome.exit_code or (0 if verdict.identical else DIFFERS_EXIT)


def verify_and_tag(recorded, rerun_id: str, tolerance: float, env, prefix: str = ""):
    """Compare, print the verdict (and what may explain a difference), tag both runs with it."""
    from regfw.reproduce.verify import compare_runs
    from regfw.store import open_client
    from regfw.store import tags as T

    client = open_client(recorded.uri)
    verdict = compare_runs(client, recorded.run_id, rerun_id, tolerance)
    click.echo(prefix + verdict.line())
    if not verdict.identical and env is not None:
        if env.causes:
            click.echo(f"{prefix}  the difference may come from what differs in the environment: {', '.join(env.causes)}")
        if env.changed:
            click.echo(f"{prefix}  the configuration differs from the original's: {', '.join(env.changed)}")
    detail = verdict.line()[:5000]
    client.set_tag(rerun_id, T.VERDICT, verdict.word)
    client.set_tag(rerun_id, T.VERDICT_DETAIL, detail)
    client.set_tag(recorded.run_id, T.VERDICT, verdict.word)
    client.set_tag(recorded.run_id, T.VERDICT_DETAIL, detail)
    client.set_tag(recorded.run_id, T.VERIFIED_BY, rerun_id)
    return verdict


COMMANDS = [rerun]
