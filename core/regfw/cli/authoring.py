"""``regfw check`` and ``regfw new-plugin``: for people writing plugins."""

from __future__ import annotations

import sys

import click

from regfw.errors import RegfwError, did_you_mean


@click.command()
@click.argument("plugin_names", nargs=-1, metavar="[PLUGIN]...")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda|cuda:N|mps|auto",
              help="Where to build and train the components.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),  # numpy's seed range
              help="Seed for the two identical trials.")
def check(plugin_names, device, seed):
    """Check that every component PLUGIN registers works: one line per component.

    Each component is built with its defaults and trained for two steps: the loss must be finite,
    the same seed must give the same result, parameters must land on --device and the model's
    state_dict must round-trip. Exits non-zero when anything fails. Without PLUGIN, checks every
    installed plugin. `regfw plugins` lists the names.
    """
    from regfw.plugins import get_plugins

    loaded = get_plugins()
    names = list(plugin_names) or sorted(n for n, i in loaded.info.items() if i.status != "disabled")
    for name in names:
        if name not in loaded.info:
            raise RegfwError(f"unknown plugin '{name}'{did_you_mean(name, loaded.info)} (see `regfw plugins`)")
        if loaded.info[name].status == "disabled":
            raise RegfwError(f"plugin '{name}' is disabled by REGFW_DISABLE_PLUGINS")
    from regfw.config import DEVICE_RE

    if not DEVICE_RE.match(device):
        raise RegfwError(f"device must be auto, cpu, cuda, cuda:N or mps, got '{device}'")
    from regfw.conformance import check_registered

    passed = failed = skipped = 0
    for name in names:
        report = check_registered(loaded, name, device=device, seed=seed)
        if len(names) > 1:
            click.echo(f"{name}:")
        for line in report.lines():
            click.echo(line)
        # A plugin that failed to load counts as one failure and has no components to pass.
        passed += len(report.passed)
        failed += len(report.failures) + (1 if report.error else 0)
        skipped += len(report.skipped)
    summary = f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
    if failed:
        click.echo(f"regfw: error: check failed: {summary}", err=True)
        sys.exit(1)
    click.echo(summary)


@click.command(name="new-plugin")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder in which to create the plugin's folder.")
def new_plugin(name, directory):
    """Write a new plugin package that installs and passes its own test, in the folder NAME/
    (a leading 'regfw-' is dropped: `new-plugin regfw-foo` writes foo/, distribution regfw-foo).

    It holds a pyproject.toml with the `regfw` entry point, one example per hook, a README and a
    test that uses regfw.testing.

    \b
    Then:
      pip install -e NAME
      pytest NAME
      regfw list
    """
    from regfw.scaffold import write_plugin

    folder = write_plugin(name, directory)
    created = sorted(str(p.relative_to(folder.parent)) for p in folder.rglob("*") if p.is_file())
    click.echo(f"created plugin '{name}' in {folder}:")
    for path in created:
        click.echo(f"  {path}")
    click.echo(f"next: pip install -e {folder} && pytest {folder} && regfw list")


COMMANDS = [check, new_plugin]
