"""``regfw rerun RUN_ID [--verify]``: train a recorded run again from its own record, and say
whether it reproduced: bit for bit, or where it first differs and what in the environment may be why."""

from __future__ import annotations

import sys

import click

from regfw.interrupts import Interrupted, sigterm_as_interrupt

VECTORIZED_TOLERANCE = 1e-5  # the vectorized path's stated tolerance (docs/comparing.md): CPU float32, relative
VECTORIZED_SOURCE = "docs/comparing.md, 'Same results'"
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
@click.option("--ray-address", metavar="ADDRESS",
              help="With --backend ray: the cluster (as `regfw sweep --ray-address`; default $RAY_ADDRESS, else a "
                   "local Ray instance).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but the verdict and errors.")
def rerun(run_id, verify, tolerance, sets, tracking_uri, experiment_name, jobs, vectorize, backend, ray_address,
          quiet):
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
    import math

    if tolerance is not None and not math.isfinite(tolerance):  # click's FloatRange lets nan and inf through
        raise click.BadParameter(f"{tolerance} is not a finite number", param_hint="'--tolerance'")
    from regfw.cli.common import one_line_plugin_errors
    from regfw.runs.queries import full_run_id
    from regfw.config import parse_set
    from regfw.plugins import get_plugins
    from regfw.reproduce.record import check_data_files, load_recorded
    from regfw.store import tracking_uri as resolve_uri

    plugins = get_plugins()
    one_line_plugin_errors(plugins)
    uri = resolve_uri(tracking_uri)
    run_id = full_run_id(uri, run_id)
    recorded = load_recorded(uri, run_id)
    pairs = parse_set(sets)
    from regfw.errors import RegfwError

    if recorded.is_sweep:
        from regfw.reproduce.sweep import load_sweep

        if ray_address and backend != "ray":
            raise RegfwError("--ray-address goes with --backend ray")
        if backend == "ray" and (jobs > 1 or vectorize):
            raise RegfwError("--jobs and --vectorize are for --backend local: on Ray the free CPUs set how many "
                             "points run at once")
        found = load_sweep(plugins.registry, recorded, pairs)
        from regfw.cli.sweep import check_sweep_fits

        check_sweep_fits(found.grid.points, plugins.registry)  # as `regfw sweep`: before the parent run
        sys.exit(rerun_sweep(found, verify=verify, tolerance=tolerance, experiment_name=experiment_name, jobs=jobs,
                             vectorize=vectorize, backend=backend, ray_address=ray_address, quiet=quiet))
    if jobs > 1 or vectorize or backend != "local" or ray_address:
        raise RegfwError("--jobs, --vectorize, --backend and --ray-address go with a sweep's parent run; this run is "
                         "one run")
    config = recorded.config(plugins.registry, pairs)
    check_data_files(recorded, config)
    from regfw.sizing import check_model_fits

    check_model_fits(config, plugins.registry)  # as `regfw run`: a size this device cannot hold is one line now
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
        launch_and_exit(world, config)  # what no rank could train is refused once, before torchrun
    speaks = parallel is None or parallel.leader
    pruned_at = _pruned_at(recorded.tags)
    tracker = MlflowTracker(recorded.uri, experiment_name or recorded.experiment_name,
                            extra_tags={T.RERUN_OF: recorded.run_id} | ({T.PRUNED_AT: pruned_at} if pruned_at else {}))
    found = {}

    def before_start(tags):
        found["env"] = env = environment.compare(recorded.tags, tags, recorded.params, config.flat_params())
        if speaks and not quiet:
            processes = f", on {world} processes as the original" if world > 1 else ""
            click.echo(f"rerun of run {recorded.run_id} ({recorded.run_name}, {recorded.status}) in {recorded.uri}"
                       f"{processes}")
            for line in environment.table(env):
                click.echo(line)
            if pruned_at:
                click.echo(f"  the original trial was pruned by its study after epoch {pruned_at}: this rerun stops there too")

    reporter = Reporter("quiet" if quiet else "auto")
    try:
        with sigterm_as_interrupt():
            outcome = execute(config, plugins, tracker, run_name=f"{recorded.run_name} (rerun)", reporter=reporter,
                              parallel=parallel, before_start=before_start, watch=_stop_at(pruned_at))
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
                   f"alone: compared within the vectorized path's stated relative tolerance {rel:g} "
                   f"({VECTORIZED_SOURCE})")
    if T.RESUMED_FROM in recorded.tags:
        click.echo(f"the original was resumed from its checkpoint at epoch {recorded.tags[T.RESUMED_FROM]}; this rerun "
                   f"trained straight through: compared over the whole history")
    verdict = verify_and_tag(recorded, outcome.run_id, rel or 0.0, found.get("env"))
    if verdict.identical and outcome.status == recorded.status == "FAILED":
        click.echo(f"the original failed the same way: reproduced ({recorded.tags.get(T.FAILURE, 'FAILED')})")
        return 0  # what --verify asks is answered: a diverged run diverges again, at the same epoch
    return outcome.exit_code or (0 if verdict.identical else DIFFERS_EXIT)


def _pruned_at(tags: dict) -> int | None:
    """The epoch after which a search's pruner stopped the original (a pruned trial), or None."""
    from regfw.store import tags as T

    try:
        return int(tags[T.PRUNED_AT]) if T.PRUNED_AT in tags else None
    except ValueError:
        return None


def _stop_at(epoch: int | None):
    """A watch (``runner.execute``) that stops the rerun where its original trial was pruned: what
    the trial recorded is what it trained, and a rerun of the whole schedule would not compare."""
    if epoch is None:
        return None

    def watch(done: int, history, recorder) -> None:
        from regfw.runner import Pruned

        if done >= epoch:
            raise Pruned(done)

    return watch


def _stacking(tags: dict) -> str:
    """How a sweep point trained: its bucket's tag (``bucket 1, 4 points``), or alone."""
    from regfw.store import tags as T

    return f"stacked ({tags[T.BUCKET]})" if T.BUCKET in tags else "alone"


def rerun_sweep(found, *, verify, tolerance, experiment_name, jobs, vectorize, backend, ray_address=None,
                quiet=False) -> int:
    """Rerun every point of a recorded sweep as a new sweep (the same machinery as `regfw sweep`), then
    give each point's environment and verdict; the exit code: failed points, else 4 on a difference."""
    from regfw.cli.progress import Reporter
    from regfw.cli.sweep import print_fallback, print_plan, print_point
    from regfw.reproduce import environment
    from regfw.store import open_client
    from regfw.store import tags as T
    from regfw.sweep import run_sweep

    parent, grid, originals = found.parent, found.grid, found.points
    total = len(grid.points)
    if not quiet:
        click.echo(f"rerun of sweep {parent.tags.get(T.SWEEP_ID)} (run {parent.run_id}, {total} point"
                   f"{'s' * (total != 1)}, {parent.status}) in {parent.uri}")
    ray = None
    if backend == "ray":
        from regfw.training.ray_cluster import RayOptions

        ray = RayOptions(ray_address, announce=None if quiet else click.echo)

    def on_result(result, point):
        if not quiet:
            print_point(result, point, total)

    reporter = Reporter("bar") if not quiet and sys.stderr.isatty() and jobs == 1 else None
    # The tag says which run each new one repeats: the parent's for now (run_sweep gives every run the
    # same extra tags); each point's is set to its own original below, once its run exists.
    outcome = run_sweep(grid, parent.uri, experiment_name or parent.experiment_name, jobs=jobs, reporter=reporter,
                        on_result=on_result, vectorize=vectorize,
                        on_plan=None if quiet else lambda plan: print_plan(plan, grid.points),
                        on_fallback=None if quiet else lambda indices, why: print_fallback(indices, why, grid.points),
                        ray=ray, tags={T.RERUN_OF: parent.run_id})
    client = open_client(parent.uri)
    done = [r for r in outcome.results if r.run_id is not None]
    envs, stacked = {}, {}
    for result in done:
        original = originals[result.index]
        client.set_tag(result.run_id, T.RERUN_OF, original.run_id)
        tags = dict(client.get_run(result.run_id).data.tags)
        envs[result.index] = environment.compare(original.tags, tags, original.params,
                                                 grid.points[result.index].config.flat_params())
        stacked[result.index] = (_stacking(original.tags), _stacking(tags))
    client.set_tag(outcome.parent_run_id, T.RERUN_OF, parent.run_id)
    heads = {r.index: f"[{r.index + 1:>{len(str(total))}}/{total}] {grid.points[r.index].run_name}: " for r in done}
    tables = {i: environment.table(env) for i, env in envs.items()}
    if not quiet and len({tuple(t) for t in tables.values()}) == 1:
        click.echo("environment of every point:")
        for line in next(iter(tables.values())):
            click.echo(line)
    elif not quiet:
        for index, lines in tables.items():
            click.echo(f"{heads[index]}environment")
            for line in lines:
                click.echo("  " + line)
    if not verify:
        if not quiet:
            click.echo(f"sweep {outcome.sweep_id} {outcome.status.lower()}: parent run {outcome.parent_run_id}; "
                       f"--verify compares each point with its original")
        return outcome.exit_code
    # A point stacked otherwise than in the original (alone then, in a bucket now, or the reverse) is
    # compared within the vectorized path's stated tolerance; one line for each such change.
    loose = {i for i, (before, after) in stacked.items() if before != after} if tolerance is None else set()
    for change in sorted({stacked[i] for i in loose}):
        numbers = ",".join(str(i + 1) for i in sorted(loose) if stacked[i] == change)
        click.echo(f"point{'s' * (',' in numbers)} {numbers} trained {change[0]} in the original, {change[1]} now: "
                   f"compared within the vectorized path's stated relative tolerance {VECTORIZED_TOLERANCE:g} "
                   f"({VECTORIZED_SOURCE})")
    words = []
    for result in done:
        rel = VECTORIZED_TOLERANCE if result.index in loose else tolerance or 0.0
        verdict = verify_and_tag(originals[result.index], result.run_id, rel, envs[result.index],
                                 prefix=heads[result.index])
        words.append(verdict.word)
    differing = words.count("differs")
    if words:
        word = "differs" if differing else next((w for w in words if w != "identical"), "identical")
        detail = f"{len(words) - differing} of {len(words)} points reproduced, {differing} differ"
        for run_id in (parent.run_id, outcome.parent_run_id):
            client.set_tag(run_id, T.VERDICT, word)
            client.set_tag(run_id, T.VERDICT_DETAIL, detail)
        client.set_tag(parent.run_id, T.VERIFIED_BY, outcome.parent_run_id)
        click.echo(f"sweep: {detail}" + (f" (parent run {outcome.parent_run_id})" if not quiet else ""))
    if outcome.exit_code:
        return outcome.exit_code
    return DIFFERS_EXIT if differing else 0


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
