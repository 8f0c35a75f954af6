"""``regfw ui``: the MLflow UI over the run store."""

from __future__ import annotations

import subprocess
import sys

import click


@click.command()
@click.option("--tracking-uri", metavar="URI", help="Store to open (default: $MLFLOW_TRACKING_URI or ./mlruns).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; anything else exposes your runs.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def ui(tracking_uri, host, port):
    """Open the MLflow UI over the run store (Ctrl-C stops it)."""
    from regfw.store import tracking_uri as resolve_uri

    uri = resolve_uri(tracking_uri)
    if host != "127.0.0.1":
        click.echo(f"regfw: warning: binding {host}: the UI will be reachable from other machines", err=True)
    click.echo(f"MLflow UI at http://{host}:{port}  (store: {uri}; Ctrl-C to stop)")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    try:
        code = subprocess.call(command)
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


COMMANDS = [ui]
