"""Shared fixtures: a real SQLite MLflow store in a temp folder, real fake distributions on
sys.path (entry points found by importlib.metadata, as in production), and CLI helpers."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from regfw.cli import cli
from regfw.plugins import reset_plugins

REGFW = str(Path(sys.executable).with_name("regfw"))


def metrics_of(run) -> dict:
    """A run's latest metrics by regfw's plain names (MLflow files them under chart sections)."""
    from regfw.store.keys import plain

    return {plain(k): v for k, v in run.data.metrics.items()}


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch):
    """Every test discovers plugins anew and sees no plugin env vars of the caller."""
    for var in ("REGFW_DISABLE_PLUGINS", "REGFW_STRICT_PLUGINS", "REGFW_TRACE_PLUGINS", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread per test worker: the suite runs -n 2 on small problems, where more
    threads only spin against the other worker (measured up to 30x slower wall time)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


_LOADED = textwrap.dedent("""
    import sys
    from regfw.cli import main
    try:
        main(sys.argv[2:])
    except SystemExit as exc:
        code = exc.code
    print("loaded:", sys.argv[1] in sys.modules)
    sys.exit(code)
""")


def regfw_importing(module: str, args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, bool]:
    """A real ``regfw ARGS`` process, and whether it imported ``module`` (e.g. ``mlflow``):
    what a command's start-up costs is checked on the process a user runs."""
    result = subprocess.run([sys.executable, "-c", _LOADED, module, *map(str, args)], capture_output=True,
                            text=True, cwd=cwd, timeout=300)
    lines = result.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("loaded: "), result.stdout + result.stderr
    return result, lines[-1] == "loaded: True"


def stop_session(proc, grace: float = 20) -> None:
    """End the session a service leads (started with start_new_session=True): the service and every
    process it started, by the group this test created — SIGTERM, then SIGKILL."""
    import os
    import signal
    import subprocess

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on 127.0.0.1 (SQLite and artifacts in the test's folder): its
    ``http://`` URI, stopped by its own process group afterwards."""
    import os
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        yield uri
    finally:
        stop_session(server)


@pytest.fixture
def store(tmp_path):
    """A real MLflow tracking URI: SQLite in a temp folder."""
    folder = tmp_path / "store"
    folder.mkdir()
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def invoke():
    """Run the CLI in-process through Click's CliRunner; stdout and stderr kept apart."""

    def _invoke(*args, env=None):
        reset_plugins()  # each invocation discovers plugins as a fresh process would
        return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)

    return _invoke


@pytest.fixture
def regfw_script(tmp_path):
    """Run the installed ``regfw`` console script in a subprocess (cwd: a temp folder)."""

    def _run(*args, env=None, cwd=None, timeout=300):
        inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}
        full_env = inherited | (env or {})
        return subprocess.run([REGFW, *map(str, args)], capture_output=True, text=True, env=full_env,
                              cwd=cwd or tmp_path, timeout=timeout)

    return _run


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """Write a distribution with ``regfw`` entry points and its modules onto sys.path.

    ``fake_dist("acme", {"acme_plugin": "source"}, entry_points={"acme": "acme_plugin"})``
    returns the folder (use it as PYTHONPATH for subprocesses).
    """
    root = tmp_path / "site"
    root.mkdir(exist_ok=True)
    monkeypatch.syspath_prepend(str(root))

    def _make(dist: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "0.1") -> Path:
        # Dashes become underscores in the folder name, as installers write it: importlib.metadata
        # reads the name up to the first dash, so "acme-broken-0.1" would pass for a second "acme".
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[regfw]\n{lines}\n")
        for module, source in modules.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
            monkeypatch.delitem(sys.modules, module, raising=False)  # no stale copy from another test
        importlib.invalidate_caches()
        return root

    return _make


@contextlib.contextmanager
def read_only(path: Path, mode: int):
    """``path`` unwritable while inside: its mode set to ``mode``, or, as root (who ignores modes),
    made immutable with ``chattr +i``; the test is skipped where neither can be done."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
            pytest.skip("running as root without chattr: cannot make anything read-only")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)])
        return
    before = path.stat().st_mode
    path.chmod(mode)
    try:
        yield
    finally:
        path.chmod(before)
