"""`regfw ui` starts the real MLflow UI on 127.0.0.1 over the chosen store."""

import os
import signal
import socket
import subprocess
import time
import urllib.request

from conftest import REGFW


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_store_on_localhost(invoke, store):
    assert invoke("run", "linear", "--epochs", 3, "--tracking-uri", store, "-q").exit_code == 0
    port = _free_port()
    proc = subprocess.Popen([REGFW, "ui", "--tracking-uri", store, "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first_line = proc.stdout.readline()
        assert first_line.startswith(f"MLflow UI at http://127.0.0.1:{port}")
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10",
                                            timeout=2) as response:
                    body = response.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the UI did not come up"
                time.sleep(0.5)
        assert '"linear"' in body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
