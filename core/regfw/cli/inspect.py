"""``regfw list``, ``regfw show`` and ``regfw plugins``: look without building anything."""

from __future__ import annotations

import json

import click

from regfw.cli.common import one_line_plugin_errors, override_options, resolve_from_options
from regfw.errors import RegfwError, did_you_mean
from regfw.registry import KINDS, PLURAL


def table(rows: list[tuple], header: tuple) -> str:
    """Plain aligned columns; the last column is left ragged."""
    rows = [tuple("" if c is None else str(c) for c in r) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1]  # noqa: E731
    return "\n".join([fmt(header)] + [fmt(r) for r in rows])


@click.command(name="list")
@click.argument("kind", required=False, metavar="[experiments|models|datasets|losses|optimizers]")
def list_command(kind):
    """List registered experiments and components: name, description, plugin."""
    from regfw.plugins import get_plugins

    plugins = get_plugins()
    one_line_plugin_errors(plugins)
    by_plural = {PLURAL[k]: k for k in KINDS}
    if kind is not None:
        chosen = by_plural.get(kind) or (kind if kind in KINDS else None)
        if chosen is None:
            raise RegfwError(f"unknown kind '{kind}'{did_you_mean(kind, by_plural)}")
        kinds = [chosen]
    else:
        kinds = list(KINDS[-1:] + KINDS[:-1])  # experiments first
    blocks = []
    for k in kinds:
        entries = plugins.registry.all(k)
        rows = [(e.name, e.plugin, e.description) for e in entries]
        blocks.append(f"{PLURAL[k]}:\n" + table(rows, ("name", "plugin", "description")) if rows else f"{PLURAL[k]}: (none)")
    click.echo("\n\n".join(blocks))


@click.command()
@override_options
def show(**kwargs):
    """Print the resolved configuration of EXPERIMENT as YAML: exactly what `regfw run` uses.

    Takes the same overrides as `regfw run`; the output can be edited and passed back with --config.
    """
    from regfw.plugins import get_plugins

    plugins = get_plugins()
    config = resolve_from_options(plugins, kwargs)
    click.echo(config.to_yaml(), nl=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json):
    """Show every plugin: name, distribution, version, hooks, and status or error."""
    from dataclasses import asdict

    from regfw.plugins import get_plugins

    loaded = get_plugins()
    infos = sorted(loaded.info.values(), key=lambda i: i.name)
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    rows = []
    for i in infos:
        dist = f"{i.distribution} {i.version}" if i.distribution else "(in-process)"
        status = i.status if not i.error else f"{i.status}: {i.error}"
        status += "".join(f"; note: {note}" for note in i.notes)  # shared names: only they need plugin:name
        rows.append((i.name, dist, ",".join(h.replace("register_", "") for h in i.hooks) or "-", status))
    click.echo(table(rows, ("name", "distribution", "hooks", "status")))


COMMANDS = [list_command, show, plugins]
