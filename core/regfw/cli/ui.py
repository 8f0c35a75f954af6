"""``regfw ui``: the MLflow UI over the run store, started lean and stopped completely.

MLflow's own ``mlflow server`` starts four uvicorn workers, a job runner and its queue consumers
(a dozen processes, for GenAI jobs regfw never uses) and, when its parent is stopped, leaves them
serving. Here it runs with one worker and job execution off, in its own process group, which
regfw stops as a whole on Ctrl-C, SIGTERM or SIGHUP; killed outright (SIGKILL), regfw cannot,
so the server watches regfw's pid and stops itself. It serves regfw's app (``--app-name regfw``,
regfw/mlflow_ui): MLflow's UI opening in Model-training mode with the runs table preset.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import click

LOOPBACK = ("127.0.0.1", "localhost", "::1")
READY_TIMEOUT = 300.0  # seconds: importing MLflow on a busy 2-core machine can take a minute
# MLflow's UI opens in its GenAI view (traces, no runs) unless told otherwise; this query
# parameter opens the runs table. Experiments regfw creates also carry the matching kind tag.
VIEW = "?workflowType=machine_learning"
SHOWN_EXPERIMENTS = 5


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (checked before starting, so a URL
    served by someone else is never printed as ours)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        if probe.connect_ex((host if host not in ("0.0.0.0", "::") else "127.0.0.1", port)) == 0:
            return True
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def server_command(uri: str, host: str, port: int) -> tuple[list[str], dict]:
    from regfw.store import sqlite_path

    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "regfw", "--backend-store-uri", uri,
               "--registry-store-uri", uri, "--host", host, "--port", str(port), "--workers", "1",
               "--uvicorn-opts", "--log-level warning"]
    if host not in LOOPBACK:
        # MLflow's security middleware answers only requests addressed to localhost unless told
        # otherwise: a UI bound to another address would refuse every page. The user chose to
        # expose it (and was warned), so accept that address, or any name for a wildcard bind.
        command += ["--allowed-hosts", "*" if host in ("0.0.0.0", "::") else f"{host},{host}:{port}"]
    path = sqlite_path(uri)
    if path is not None:
        # New experiments' artifacts beside the database, as regfw files them; not ./mlartifacts.
        command += ["--default-artifact-root", (path.parent / "artifacts").resolve().as_uri()]
    env = dict(os.environ)
    env.update({
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no huey job runner nor its consumers
        "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning,ignore::UserWarning",
        "MLFLOW_LOGGING_LEVEL": "WARNING",
        "GIT_PYTHON_REFRESH": "quiet",
        "REGFW_UI_PARENT_PID": str(os.getpid()),  # the server ends itself when regfw is gone
    })
    return command, env


def wait_ready(proc: subprocess.Popen, host: str, port: int, timeout: float = READY_TIMEOUT) -> bool:
    """Until the server accepts connections (True) or exits (False)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((target, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the server's whole process group, SIGKILL to what is left after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; its workers may linger a moment: check the group is empty.
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def experiment_links(host: str, port: int, base: str, limit: int = SHOWN_EXPERIMENTS) -> list[tuple[str, str]]:
    """The most recently used experiments and the address of their runs table, asked of the
    server itself (no MLflow import here). MLflow 3.17 keeps its GenAI/Model-training choice in
    the browser and drops it when an experiment is opened from its list, so these links carry it."""
    import json
    import urllib.request

    target = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    target = f"[{target}]" if ":" in target else target
    query = f"http://{target}:{port}/api/2.0/mlflow/experiments/search?max_results={limit}&order_by=last_update_time%20DESC"
    try:
        with urllib.request.urlopen(query, timeout=10) as response:
            found = json.loads(response.read().decode()).get("experiments", [])
    except (OSError, ValueError):
        return []  # the links are a convenience; the UI itself is up
    return [(e["name"], f"{base}/#/experiments/{e['experiment_id']}/runs{VIEW}") for e in found]


@click.command()
@click.option("--tracking-uri", metavar="URI", help="Store to open (default: $MLFLOW_TRACKING_URI or ./mlruns).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; anything else exposes your runs.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def ui(tracking_uri, host, port):
    """Open the MLflow UI over the run store (Ctrl-C stops it).

    Starts MLflow's server with one worker and no job runner, opened on the runs of each
    experiment; stopping regfw stops every process of the server."""
    from regfw.errors import RegfwError
    from regfw.store import check_reachable, tracking_uri as resolve_uri

    try:  # a name that does not resolve is the user's typo, not an "unexpected" socket error
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RegfwError(f"--host {host!r} does not resolve to an address ({exc.args[-1]})") from None
    uri = resolve_uri(tracking_uri)
    check_reachable(uri, create=False)
    if port_taken(host, port):
        raise RegfwError(f"port {port} on {host} is already in use; choose another with --port")
    if host not in LOOPBACK:
        click.echo(f"regfw: warning: binding {host}: the UI will be reachable from other machines", err=True)
    command, env = server_command(uri, host, port)
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    url = f"{base}/#/experiments{VIEW}"
    click.echo(f"starting the MLflow UI over {uri} ...", err=True)

    stopping: list[int] = []

    def forward(signum, _frame):
        stopping.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    proc = address = None
    from regfw import ui_address

    try:
        # Its own session: the whole group (server, worker) is stopped by one killpg, and a
        # Ctrl-C in the terminal reaches regfw only, which then stops the group in order.
        proc = subprocess.Popen(command, env=env, start_new_session=True, stdin=subprocess.DEVNULL)
        if not wait_ready(proc, host, port):
            code = proc.poll()
            raise RegfwError(f"the MLflow server exited (status {code}) before serving; see its output above"
                             if code is not None else f"the MLflow server did not answer on port {port} in time")
        address = ui_address.announce(uri, host, port)  # `regfw run` and `sweep` then print their run's page
        click.echo(f"MLflow UI at {url}  (store: {uri}; Ctrl-C to stop)")
        for name, link in experiment_links(host, port, base):
            click.echo(f"  {name}: {link}")
        code = proc.wait()
    except KeyboardInterrupt:
        code = 128 + (stopping[0] if stopping else signal.SIGINT)
    finally:
        ui_address.withdraw(address)
        if proc is not None:
            stop_group(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopping:
        click.echo("MLflow UI stopped", err=True)
    sys.exit(code)


COMMANDS = [ui]
