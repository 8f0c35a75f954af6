"""A sweep seen through the real MLflow UI server: its REST API returns the parent and child
runs, their params and their metric histories as regfw wrote them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from regfw.store.keys import stored
from conftest import stop_session

STARTUP_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(base: str, path: str, **query):
    url = f"{base}{path}?{urllib.parse.urlencode(query)}" if query else base + path
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _post(base: str, path: str, body: dict):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _wait_ready(base: str, proc: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"the MLflow server exited with {proc.returncode}: {log.read()[-2000:]}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"the MLflow server was not ready within {STARTUP_SECONDS} s")


@pytest.mark.slow
def test_the_mlflow_ui_serves_the_sweep(invoke, store, tmp_path):
    result = invoke("sweep", "linear", "--set", "optimizer.lr=0.01,0.1", "--seeds", "0,1", "--epochs", "40",
                    "--tracking-uri", store, "--quiet")
    assert result.exit_code == 0, result.stderr

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job runner: a lighter, faster start
    with open(tmp_path / "server.log", "w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
                                 "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
        try:
            _wait_ready(base, proc, log)
            experiment = _get(base, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="linear")["experiment"]
            runs = _post(base, "/api/2.0/mlflow/runs/search",
                         {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
            tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
            params = {r["info"]["run_id"]: {p["key"]: p["value"] for p in r["data"].get("params", [])} for r in runs}
            parents = [rid for rid, t in tags.items() if t.get("regfw.role") == "sweep"]
            assert len(runs) == 5 and len(parents) == 1
            parent = parents[0]
            children = [rid for rid, t in tags.items() if t.get("mlflow.parentRunId") == parent]
            assert len(children) == 4  # the UI nests these under the parent
            assert {(params[c]["optimizer.lr"], params[c]["seed"]) for c in children} == {
                ("0.01", "0"), ("0.01", "1"), ("0.1", "0"), ("0.1", "1")}
            sweep_id = tags[parent]["regfw.sweep_id"]
            assert all(tags[c]["regfw.sweep_id"] == sweep_id for c in children)
            names = {r["info"]["run_id"]: r["info"]["run_name"] for r in runs}
            assert names[parent] == "linear sweep lr=0.01,0.1 seed=0,1"

            for child in children:
                history = _get(base, "/api/2.0/mlflow/metrics/get-history", run_id=child,
                               metric_key=stored("train_loss"))["metrics"]
                steps = sorted((m["step"], m["value"]) for m in history)
                assert [s for s, _ in steps] == list(range(1, 41))  # every epoch, as regfw logged it
                assert steps[-1][1] < steps[0][1] / 2  # the loss fell
                final = next(m["value"] for r in runs if r["info"]["run_id"] == child
                             for m in r["data"]["metrics"] if m["key"] == stored("final_train_loss"))
                assert final == steps[-1][1]
            # what `regfw runs` computes from the same store agrees with the server
            ours = json.loads(invoke("runs", "linear", "--json", "--tracking-uri", store).stdout)
            assert {r["run_id"] for r in ours} == set(children)
        finally:
            stop_session(proc)
    assert proc.poll() is not None
