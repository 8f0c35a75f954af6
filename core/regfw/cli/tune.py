"""``regfw tune``: a search (Optuna) over the same params ``--set`` takes, under one MLflow parent run.

Only click and regfw's light modules are imported at the top: optuna, torch and mlflow are
imported inside the command, so ``regfw --help`` stays free of them.
"""

from __future__ import annotations

import sys

import click

from regfw.cli.common import FLAG_KEYS, FLAG_OPTIONS, SWAPS, one_line_plugin_errors, override_options

SPACE_HELP = ("A searched param as KEY=FORM, FORM one of float(LOW,HIGH), float(LOW,HIGH,log), "
              "float(LOW,HIGH,step=S), log(LOW,HIGH), int(LOW,HIGH[,log|,step=S]), choice(A,B,...); "
              "KEY as in --set. Repeatable.")


def _value_text(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def print_trial(tr, search) -> None:
    shown = " ".join(f"{k.rsplit('.', 1)[-1]}={_value_text(v)}" for k, v in tr.values.items())
    value = f"  {search.metric} {tr.value:.6g}" if tr.value is not None else ""
    where = f" at epoch {tr.pruned_at}" if tr.pruned_at is not None else ""
    line = f"[trial {tr.number}] {tr.state:<8}{where} {shown}{value}  ({tr.seconds:.1f} s)"
    if tr.bucket:
        line += f"  {tr.bucket}"
    if tr.error and tr.state == "failed":
        line += f"  {tr.error}"
    click.echo(line)


def default_study(experiment: str, record: dict) -> str:
    """The experiment's name and a digest of what is searched: the same command continues its study."""
    import hashlib
    import json

    digest = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:8]
    return f"{experiment}-{digest}"


@click.command()
@override_options
@click.option("--space", "spaces", multiple=True, metavar="KEY=FORM", help=SPACE_HELP)
@click.option("--metric", metavar="NAME",
              help="The objective, a metric as `regfw runs` shows it (default: final_test_loss, else final_train_loss).")
@click.option("--direction", default="minimize", show_default=True, metavar="minimize|maximize",
              help="Whether the metric is to be made small or large.")
@click.option("--sampler", default="tpe", show_default=True, metavar="tpe|random|cmaes|qmc|grid",
              help="How Optuna picks the next trial.")
@click.option("--pruner", default="none", show_default=True, metavar="none|median|asha|hyperband",
              help="Stop unpromising trials early, on the metric's curve at the report points.")
@click.option("--report-every", type=click.IntRange(min=1), metavar="N",
              help="Report the metric to the pruner every N epochs (a multiple of train.log_every; "
                   "default: about 20 report points per trial).")
@click.option("--trials", type=click.IntRange(min=1), metavar="N",
              help="Trials to run now (default 20 unless --timeout is given).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Ask no new trial after this many seconds.")
@click.option("--study", metavar="NAME",
              help="The study's name; an existing study of that name is continued (default: the experiment "
                   "and a digest of the search, so the same command continues).")
@click.option("--storage", metavar="URL",
              help="Optuna RDB storage (default: sqlite optuna.db beside a SQLite run store).")
@click.option("--vectorize", is_flag=True,
              help="Train trials together as one stacked program; over seeds and optimizer values, a trial that ends "
                   "gives its row to a new one "
                   "(docs/tuning.md, 'Stacked trials').")
@click.option("--batch", type=click.IntRange(min=2), metavar="N",
              help="With --vectorize: the stack's rows, N trials training at once (default 8, at most --trials).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Trials trained at once: N worker processes (--backend local), or N Ray tasks in flight "
                   "(--backend ray, default its CPUs); a new trial is asked as each ends (with --vectorize: "
                   "N stacks, asked in waves).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: here (--jobs processes); ray: every trial (or --vectorize stack) a Ray task "
                   "(docs/scaling.md).")
@click.option("--ray-address", metavar="ADDRESS",
              help="With --backend ray: the cluster (auto, HOST:PORT, ray://HOST:10001; default $RAY_ADDRESS, "
                   "else a local Ray instance).")
@click.option("--experiment-name", metavar="NAME", help="MLflow experiment (default: the regfw experiment's name).")
@click.option("--tracking-uri", metavar="URI", help="MLflow store (default: $MLFLOW_TRACKING_URI or ./mlruns).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors and the best trial.")
def tune(**kwargs):
    """Search EXPERIMENT's params with Optuna: one MLflow parent run, one child run per trial.

    Every --space key and bound is checked against the components' declared params before
    anything runs; --set fixes values as in `regfw run`. --seed makes the search repeatable.
    Ctrl-C or SIGTERM stops it with no trial left running, in the study or in MLflow.

    \b
    Examples:
      regfw tune quadratic-linear --space 'optimizer.lr=log(1e-5,1e-4)' \\
          --space 'optimizer.momentum=float(0,0.95)' --trials 32 --seed 0
      regfw tune mlp-regression --space 'optimizer.lr=log(1e-4,1e-1)' --pruner median --epochs 10
      regfw runs quadratic-linear --study NAME        # its trials, best first
    """
    from regfw.plugins import get_plugins

    plugins = get_plugins()
    one_line_plugin_errors(plugins)
    search, extra = _search_from_options(plugins.registry, kwargs)

    from regfw.cli.progress import Reporter
    from regfw.store import default_tracking_uri, tracking_uri
    from regfw.tune.search import run_command, run_search

    quiet = kwargs["quiet"]
    uri = tracking_uri(kwargs["tracking_uri"])
    experiment_name = kwargs["experiment_name"] or search.experiment
    if search.storage == "":
        from regfw.tune.study import default_storage

        search.storage = default_storage(uri)
    if not quiet:
        batch = min(search.wave, search.trials or search.wave)
        how = (f"asked {batch} at a time and stacked" if search.stack > 1 else
               f"{batch} at once as Ray tasks, a new one asked as each ends" if search.ray is not None else
               f"{batch} at once in {search.jobs} processes, a new one asked as each ends" if search.jobs > 1
               else "one after another")
        amount = f"{search.trials} trial{'s' * (search.trials != 1)}" if search.trials else "trials"
        until = f" for {search.timeout:g} s" if search.timeout else ""
        click.echo(f"study {search.study}: {amount}{until} of {search.experiment}, {search.metric} "
                   f"({search.direction}), {search.sampler} sampler, pruner {search.pruner}, {how}")
    reporter = Reporter("bar") if not quiet and sys.stderr.isatty() and search.wave == 1 else None
    outcome = run_search(search, plugins.registry, uri, experiment_name, reporter=reporter,
                         on_trial=None if quiet else (lambda tr: print_trial(tr, search)),
                         on_plan=None if quiet else click.echo)
    where = "" if uri == default_tracking_uri() else f" --tracking-uri '{uri}'"
    name = f"'{experiment_name}'" if " " in experiment_name else experiment_name
    counts = {s: sum(t.state == s for t in outcome.trials) for s in ("complete", "pruned", "failed")}
    click.echo(f"study {search.study} {outcome.status.lower()}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if outcome.best_number is not None:
        click.echo(f"  best trial {outcome.best_number}: {search.metric} {outcome.best_value:.6g}, "
                   f"run {outcome.best_run_id}")
        run_extra = list(extra) + ([f"--tracking-uri={uri}"] if where else []) + \
            ([f"--experiment-name={experiment_name}"] if kwargs["experiment_name"] else [])
        click.echo(f"  repeat: {run_command(search, outcome.best_values, run_extra)}")
    click.echo(f"  parent run {outcome.parent_run_id}; trials: regfw runs {name} --study {search.study}{where}")
    if outcome.status == "KILLED":
        click.echo("regfw: error: search interrupted", err=True)
    elif outcome.best_number is None and counts["failed"]:
        click.echo(f"regfw: error: {counts['failed']} trials failed, none completed", err=True)
        sys.exit(1)
    sys.exit(outcome.exit_code)


def _search_from_options(registry, kwargs: dict):
    """Parse and check everything (space, metric, direction, sampler, pruner) before any run exists.
    Returns the :class:`regfw.tune.search.Search` and the ``regfw run`` options that repeat its fixed part."""
    from regfw.config import load_config_file
    from regfw.errors import RegfwError
    from regfw.tune.space import check_space, parse_space
    from regfw.tune.study import PRUNERS, SAMPLERS

    experiment = kwargs.pop("experiment")
    registry.get("experiment", experiment)  # an unknown experiment: did-you-mean now
    for name, allowed in (("direction", ("minimize", "maximize")), ("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if kwargs[name] not in allowed:
            raise RegfwError(f"--{name} must be one of {', '.join(allowed)}, got {kwargs[name]!r}")
    if kwargs["study"] is not None and not kwargs["study"].strip():  # not silently the default study
        raise RegfwError("--study needs a name (leave it out for the default: the experiment and a digest of the search)")
    jobs, backend = kwargs.pop("jobs"), kwargs.pop("backend")
    ray_address = kwargs.pop("ray_address")
    if ray_address and backend != "ray":
        raise RegfwError("--ray-address goes with --backend ray")
    if kwargs["batch"] and not kwargs["vectorize"]:
        raise RegfwError("--batch goes with --vectorize")
    seed = kwargs.pop("seed")  # the search's seed; a run's own seed is --set seed=N or --space seed=...
    config_path = kwargs.pop("config_path")
    config_file = load_config_file(config_path) if config_path else None
    swaps = {part: kwargs.pop(part) for part in SWAPS}
    flags = {FLAG_KEYS[name]: kwargs.pop(name) for name in FLAG_KEYS if name != "seed"}
    sets = list(kwargs.pop("sets"))
    dims = parse_space(kwargs["spaces"])
    base = check_space(registry, experiment, dims, sets=sets, config_file=config_file, swaps=swaps, flags=flags)

    import math

    from regfw.build import build_data
    from regfw.recorder import default_log_every
    from regfw.tune.search import Search, curve_of, objective_metrics

    data = build_data(base, registry)  # what it records (a test split?): the metric is checked now
    metrics = objective_metrics(base, data)
    metric = kwargs["metric"] or ("final_test_loss" if data.has_test else "final_train_loss")
    if metric not in metrics:
        from regfw.errors import did_you_mean

        raise RegfwError(f"--metric {metric!r}: {experiment} does not record it{did_you_mean(metric, metrics)}")
    epochs = base.train["epochs"]
    log_every = base.train["log_every"] or default_log_every(epochs)
    if kwargs["pruner"] != "none" and curve_of(metric) is None:
        raise RegfwError(f"--pruner needs a metric with a curve (final_* or best_*), not {metric}")
    every = kwargs["report_every"]
    if every is None:
        every = log_every * max(1, math.ceil(epochs / 20 / log_every))
    elif every % log_every:
        raise RegfwError(f"--report-every {every} is not a multiple of train.log_every ({log_every}): the metric "
                         "is computed at the log points only")
    trials = kwargs["trials"] or (None if kwargs["timeout"] else 20)
    resolve_kwargs = {"config_file": config_file, "swaps": swaps, "flags": flags}
    search = Search(experiment, dims, base, sets, resolve_kwargs, metric, kwargs["direction"], kwargs["sampler"],
                    kwargs["pruner"], seed, trials, kwargs["timeout"], report_every=every,
                    stack=(kwargs["batch"] or 8) if kwargs["vectorize"] else 1, jobs=jobs)
    if backend == "ray":
        import os

        from regfw.training.ray_cluster import RayOptions

        search.ray = RayOptions(ray_address, announce=None if kwargs["quiet"] else click.echo)
        if jobs == 1:
            search.jobs = os.cpu_count() or 1
    from regfw.tune.study import search_record

    search.study = kwargs["study"] or default_study(experiment, search_record(experiment, dims, metric,
                                                                              kwargs["direction"]))
    search.storage = kwargs["storage"] or ""
    from regfw.tune.study import make_sampler

    if kwargs["sampler"] in ("cmaes", "grid"):
        make_sampler(kwargs["sampler"], seed, dims)  # refuses a space it cannot search, now
    extra = []
    if config_path:
        extra += ["--config", config_path]
    for part, name in swaps.items():
        if name is not None:
            extra += [f"--{part}", name]
    for key, value in flags.items():
        if value is not None:
            extra += [FLAG_OPTIONS[key], str(value)]
    return search, extra


COMMANDS = [tune]
