"""``regfw run`` and ``regfw sweep`` end with their run's own UI page when a ``regfw ui`` serves the
store (its address file beside the SQLite database), and with the command that starts one when
none does (issue 26)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import REGFW, stop_session
from regfw.ui_address import SUFFIX

VIEW = "?workflowType=machine_learning"


def _last_run(store: str, experiment: str = "linear"):
    client = MlflowClient(store)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return experiment_id, client.search_runs([experiment_id], max_results=1)[0]


def test_without_a_ui_the_end_says_how_to_open_one(invoke, store):
    result = invoke("run", "linear", "--epochs", "5", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"  open it with: regfw ui --tracking-uri '{store}'"
    # An address file whose process is gone (a regfw ui killed with SIGKILL) points nowhere.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    address = Path(store[len("sqlite:///"):] + SUFFIX)
    address.write_text(json.dumps({"host": "127.0.0.1", "port": 9, "pid": gone.pid}))
    result = invoke("run", "linear", "--epochs", "5", "--tracking-uri", store)
    assert result.stdout.splitlines()[-1].startswith("  open it with: regfw ui"), result.stdout
    assert invoke("run", "linear", "--epochs", "5", "--tracking-uri", store, "-q").stdout == ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_with_regfw_ui_serving_the_store_run_and_sweep_print_their_page(invoke, store, tmp_path):
    assert invoke("run", "linear", "--epochs", "5", "--tracking-uri", store, "-q").exit_code == 0  # the store exists
    address = Path(store[len("sqlite:///"):] + SUFFIX)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}
    ui = subprocess.Popen([REGFW, "ui", "--tracking-uri", store, "--port", str(port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env=env, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not address.exists():
            assert ui.poll() is None and time.monotonic() < deadline, "regfw ui did not start"
            time.sleep(0.3)
        assert json.loads(address.read_text()) == {"host": "127.0.0.1", "port": port, "pid": ui.pid}

        result = invoke("run", "linear", "--epochs", "5", "--tracking-uri", store)
        experiment_id, run = _last_run(store)
        link = f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{run.info.run_id}{VIEW}"
        assert result.stdout.splitlines()[-1] == f"  open it: {link}", result.stdout
        with urllib.request.urlopen(link.split("#")[0], timeout=30) as page:  # the UI answers there
            assert page.status == 200

        result = invoke("sweep", "linear", "--seeds", "0,1", "--epochs", "5", "--tracking-uri", store)
        assert result.exit_code == 0, result.stderr
        parent = [r for r in MlflowClient(store).search_runs([experiment_id]) if r.data.tags.get("regfw.role") == "sweep"]
        assert result.stdout.splitlines()[-1] == \
            f"  open it: http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{parent[0].info.run_id}{VIEW}"
        assert "open it" not in invoke("run", "linear", "--epochs", "5", "--tracking-uri", store, "-q").stdout
    finally:
        os.kill(ui.pid, signal.SIGTERM)  # regfw ui by its own pid: it stops its server and removes the file
        try:
            ui.wait(timeout=60)
        finally:
            stop_session(ui)
    assert not address.exists()
    result = invoke("run", "linear", "--epochs", "5", "--tracking-uri", store)
    assert result.stdout.splitlines()[-1].startswith("  open it with: regfw ui"), result.stdout
