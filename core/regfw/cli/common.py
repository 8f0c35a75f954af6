"""Options shared by the commands that resolve an experiment (run, show, ...)."""

from __future__ import annotations

import click

# flag name -> configuration key it sets
FLAG_KEYS = {
    "device": "device",
    "epochs": "train.epochs",
    "lr": "optimizer.lr",
    "batch_size": "train.batch_size",
    "seed": "seed",
    "log_every": "train.log_every",
    "threads": "train.threads",
}
FLAG_OPTIONS = {key: "--" + name.replace("_", "-") for name, key in FLAG_KEYS.items()}  # key -> option, for messages
SWAPS = ("model", "dataset", "loss", "optimizer")


def override_options(func):
    """--device, --epochs, --lr, component swaps, --set and --config."""
    decorators = [
        click.argument("experiment"),
        click.option("--device", metavar="auto|cpu|cuda|cuda:N|mps", help="Where to train (default: auto)."),
        click.option("--epochs", type=int, help="Training epochs."),
        click.option("--lr", type=float, help="Learning rate (optimizer.lr)."),
        click.option("--batch-size", metavar="N|full", help="Mini-batch size, or 'full' for full batch."),
        click.option("--seed", type=int, help="Random seed (default 0)."),
        click.option("--log-every", type=int, help="Record metrics every N epochs (default: about 1000 points)."),
        click.option("--threads", type=click.IntRange(min=1), metavar="N",
                     help="CPU threads torch uses (train.threads; default: torch's own, one per core)."),
        click.option("--model", metavar="NAME", help="Swap in another registered model."),
        click.option("--dataset", metavar="NAME", help="Swap in another registered dataset."),
        click.option("--loss", metavar="NAME", help="Swap in another registered loss."),
        click.option("--optimizer", metavar="NAME", help="Swap in another registered optimizer."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override any value, e.g. optimizer.lr=0.1 or train.epochs=5 (repeatable)."),
        click.option("--config", "config_path", metavar="FILE", help="YAML overrides in the shape `regfw show` prints."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def resolve_from_options(plugins, kwargs: dict, start=None):
    """Turn the parsed options into a validated Config (pops the override options). ``start``: a
    :class:`regfw.reproduce.record.StartingPoint` (``--from RUN_ID``), the layer under ``--config``."""
    from regfw.config import load_config_file, parse_set, resolve

    experiment = kwargs.pop("experiment")
    config_path = kwargs.pop("config_path")
    sets = parse_set(kwargs.pop("sets"))
    swaps = {part: kwargs.pop(part) for part in SWAPS}
    flags = {FLAG_KEYS[name]: kwargs.pop(name) for name in FLAG_KEYS}
    file_values = load_config_file(config_path) if config_path else None
    experiment, file_values = layer_start(start, experiment, file_values)
    return resolve(plugins.registry, experiment, config_file=file_values, sets=sets, swaps=swaps, flags=flags)


def cores() -> int:
    """The CPU cores this process may run on (its affinity, which a container or taskset narrows)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def warn_beyond_cores(configs) -> None:
    """One warning line when ``train.threads`` asks for more threads than there are cores: torch
    takes the number, and its threads then only wait for each other (a warning, not a refusal:
    the run is right, just slower, and a core count seen in a container can be lower than what
    its owner means). Under torchrun only rank 0 says it."""
    import os

    if os.environ.get("RANK", "0") != "0":
        return
    asked = max((c.train.get("threads") or 0 for c in configs), default=0)
    have = cores()
    if asked > have:
        click.echo(f"regfw: warning: --threads {asked} is more than the {have} CPU core(s) this process can use; "
                   f"torch's threads will wait for each other (give --threads {have} at most)", err=True)


def from_option(func):
    """--from RUN_ID (run, sweep): start from that run's configuration; EXPERIMENT may then be left out."""
    func = click.option("--from", "from_run", metavar="RUN_ID",
                        help="Start from this run's resolved configuration (same store), then apply "
                             "--config/--set/flags; the new run records it (regfw.started_from).")(func)
    for param in getattr(func, "__click_params__", ()):
        if param.name == "experiment":
            param.required = False
    return func


def starting_point(kwargs: dict):
    """Pop ``--from``: its run as a StartingPoint (read from ``--tracking-uri``'s store), or None."""
    given = kwargs.pop("from_run", None)
    if given is None:
        return None
    from regfw.reproduce.record import starting_point as read
    from regfw.store import tracking_uri

    return read(tracking_uri(kwargs.get("tracking_uri")), given)


def layer_start(start, experiment, file_values):
    """(experiment, --config values) with ``--from``'s configuration under them; without ``--from``
    a missing EXPERIMENT is a usage error, as Click's own."""
    if start is not None:
        return start.layered(experiment, file_values)
    if experiment is None:
        raise click.UsageError("Missing argument 'EXPERIMENT' (or --from RUN_ID).", click.get_current_context())
    return experiment, file_values


def one_line_plugin_errors(plugins) -> None:
    """Warn on stderr, once per command, about plugins that failed to load."""
    broken = plugins.errors()
    if broken:
        names = ", ".join(f"'{i.name}'" for i in broken)
        click.echo(f"regfw: warning: plugin(s) {names} failed to load; see `regfw plugins`", err=True)

