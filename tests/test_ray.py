"""Sweeps on Ray (``--backend ray``) against a real Ray head on this machine and a real `mlflow
server`: the runs are read back through MLflow's REST API; a worker is SIGKILLed mid-point, the
sweep is interrupted, a plugin is made unimportable on the workers only. Both services are started
here, in their own sessions, and stopped by their process ids at the end.

Kept small for a 2-core machine: one head (2 CPUs) and one server for the module, tiny points."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from regfw.store.keys import stored
from conftest import stop_session

REGFW = str(Path(sys.executable).with_name("regfw"))
RAY = str(Path(sys.executable).with_name("ray"))
STARTUP_SECONDS = 180
pytestmark = pytest.mark.xdist_group("ray")  # one cluster per test session's worker, not one in each
LONG = ["--epochs", "100000000", "--log-every", "20"]  # runs until stopped: ~2 h at ~80 us an epoch (1000000 epochs
# took ~80 s, and once a point finished before the test sent Ctrl-C on a loaded machine)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Ray 2.60 authenticates with a token; a driver sends it to an explicit address only when told to
# (RAY_AUTH_MODE=token). The head and the sweeps share one made here, not one written under ~/.ray.
TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k != "MLFLOW_TRACKING_URI" and not k.startswith(("REGFW_", "RAY_"))}
    return env | {"OMP_NUM_THREADS": "1"} | extra


class Server:
    """The MLflow REST API, read the way any client would."""

    def __init__(self, base: str):
        self.base = base

    def get(self, path: str, **query):
        with urllib.request.urlopen(f"{self.base}{path}?{urllib.parse.urlencode(query)}", timeout=30) as response:
            return json.load(response)

    def post(self, path: str, body: dict):
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def runs(self, experiment: str, view: str = "ACTIVE_ONLY") -> list[dict]:
        """Every run of ``experiment`` as {id, status, tags, params, metrics}; [] before it exists."""
        try:
            found = self.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name=experiment)
        except urllib.error.HTTPError:
            return []
        runs = self.post("/api/2.0/mlflow/runs/search", {"experiment_ids": [found["experiment"]["experiment_id"]],
                                                          "max_results": 1000, "run_view_type": view}).get("runs", [])
        return [{"id": r["info"]["run_id"], "status": r["info"]["status"],
                 "tags": {t["key"]: t["value"] for t in r["data"].get("tags", [])},
                 "params": {p["key"]: p["value"] for p in r["data"].get("params", [])},
                 "metrics": {m["key"]: m["value"] for m in r["data"].get("metrics", [])}} for r in runs]

    def steps(self, run_id: str, key: str = "train_loss") -> list[int]:
        history = self.get("/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key=stored(key))
        return sorted(m["step"] for m in history.get("metrics", []))

    def wait_for(self, experiment: str, check, proc: subprocess.Popen, timeout: float = 300) -> list[dict]:
        """Poll until ``check(children)`` holds (the sweep's child runs, as :meth:`runs` gives them)
        while the sweep ``proc`` runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"the sweep ended early ({proc.returncode}): {proc.communicate()}")
            children = [r for r in self.runs(experiment) if "mlflow.parentRunId" in r["tags"]]
            if check(children):
                return children
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting on the sweep's runs in {experiment}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head (2 CPUs) and an MLflow server, both on 127.0.0.1, for the whole module."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'regfw[ray]')")
    folder = tmp_path_factory.mktemp("cluster")
    # Ray's socket paths must stay under the Unix limit of ~107 characters: a short temp folder.
    ray_temp = tempfile.mkdtemp(prefix="rt")
    ray_port, client_port, mlflow_port = free_port(), free_port(), free_port()
    services = []
    try:
        with open(folder / "server.log", "w") as log:
            services.append(subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
                 "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                 "--artifacts-destination", str(folder / "artifacts")],
                cwd=folder, env=clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True))
        with open(folder / "ray.log", "w") as log:
            # --block: `ray start` stays the parent of the head's processes, so its session holds them all.
            services.append(subprocess.Popen(
                [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(ray_port),
                 "--ray-client-server-port", str(client_port),  # not the fixed 10001: two heads may run at once
                 "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
                 "--object-store-memory", str(100 * 1024 ** 2), "--temp-dir", ray_temp],
                cwd=folder, env=clean_env(**TOKEN), stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        server = Server(f"http://127.0.0.1:{mlflow_port}")
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _ready(server, ray_port):
            for proc, name in zip(services, ("mlflow server", "ray head")):
                assert proc.poll() is None, f"the {name} exited: {(folder / (name.split()[-1] + '.log')).read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the Ray head or the MLflow server did not start"
            time.sleep(0.5)
        yield {"address": f"127.0.0.1:{ray_port}", "uri": server.base, "server": server, "folder": folder}
    finally:
        for proc in services:
            stop_session(proc)
        shutil.rmtree(ray_temp, ignore_errors=True)


def _ready(server: Server, ray_port: int) -> bool:
    try:
        with urllib.request.urlopen(server.base + "/health", timeout=2):
            pass
        with socket.create_connection(("127.0.0.1", ray_port), timeout=2):
            return True
    except OSError:
        return False


def sweep(cluster, experiment: str, *args, **popen) -> subprocess.Popen:
    """A real `regfw sweep` process on the cluster (SIGINT at its default: Ctrl-C as on a terminal)."""
    return subprocess.Popen(
        [REGFW, "sweep", *map(str, args), "--backend", "ray", "--ray-address", cluster["address"],
         "--tracking-uri", cluster["uri"], "--experiment-name", experiment],
        cwd=cluster["folder"], env=clean_env(**TOKEN), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)


def one_line_error(stderr: str, *needles: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("regfw: error: "), stderr
    assert all(n in lines[0] for n in needles), lines[0]


def interrupted(cluster, experiment: str, proc: subprocess.Popen) -> tuple[str, dict, list[dict]]:
    """Ctrl-C to a running sweep: it exits 130 with one line; its output, parent run and children."""
    server = cluster["server"]
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert err.strip() == "regfw: error: sweep interrupted"
    runs = server.runs(experiment)
    parent = next(r for r in runs if r["tags"].get("regfw.role") == "sweep")
    return out, parent, [r for r in runs if r["tags"].get("mlflow.parentRunId") == parent["id"]]


@pytest.mark.slow
def test_a_sweep_on_a_ray_cluster_retries_a_point_whose_worker_was_killed(cluster):
    server = cluster["server"]
    proc = sweep(cluster, "ray-retry", "linear", "--set", "optimizer.lr=0.05,0.1", "--epochs", 5000, "--retries", 1)
    try:
        running = server.wait_for("ray-retry", lambda runs: any(r["status"] == "RUNNING" for r in runs), proc)
        victim = next(r for r in running if r["status"] == "RUNNING")
        os.kill(int(victim["tags"]["regfw.pid"]), signal.SIGKILL)  # a worker of the head started above
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert "2 finished, 0 failed" in out and err == ""
    runs = server.runs("ray-retry")
    parent = next(r for r in runs if r["tags"].get("regfw.role") == "sweep")
    children = [r for r in runs if r["tags"].get("mlflow.parentRunId") == parent["id"]]
    assert parent["status"] == "FINISHED" and parent["tags"]["regfw.sweep_finished"] == "2"
    assert sorted(c["params"]["optimizer.lr"] for c in children) == ["0.05", "0.1"]
    assert all(c["status"] == "FINISHED" and server.steps(c["id"])[-1] == 5000 for c in children)
    retried = next(c for c in children if c["tags"]["regfw.sweep_index"] == victim["tags"]["regfw.sweep_index"])
    assert retried["tags"]["regfw.attempt"] == "2" and retried["tags"]["regfw.pid"] != victim["tags"]["regfw.pid"]
    assert all(c["tags"]["regfw.ray_node"] for c in children)
    # The dead attempt's run is kept, FAILED with the reason, and deleted from the sweep's view.
    dead = next(r for r in server.runs("ray-retry", "DELETED_ONLY") if r["id"] == victim["id"])
    assert dead["status"] == "FAILED" and "worker died in attempt 1" in dead["tags"]["regfw.failure"]


@pytest.mark.slow
def test_a_stacked_bucket_trains_as_one_ray_task_and_is_retried_whole_when_its_worker_dies(cluster):
    server = cluster["server"]
    proc = sweep(cluster, "ray-stacked", "linear", "--set", "optimizer.lr=0.01,0.02,0.05", "--epochs", 150000,
                 "--vectorize", "--retries", 1)
    try:
        running = server.wait_for("ray-stacked", lambda runs: len(runs) == 3 and all(
            r["status"] == "RUNNING" and server.steps(r["id"]) for r in runs), proc)
        pids = {r["tags"]["regfw.pid"] for r in running}
        assert len(pids) == 1, running  # one task, one worker: the bucket's three points stacked in it
        os.kill(int(pids.pop()), signal.SIGKILL)  # a worker of the head started above
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert "vectorized: 3 points in 1 bucket" in out and "3 finished, 0 failed" in out and err == ""
    parent = next(r for r in server.runs("ray-stacked") if r["tags"].get("regfw.role") == "sweep")
    children = [r for r in server.runs("ray-stacked") if r["tags"].get("mlflow.parentRunId") == parent["id"]]
    assert sorted(c["params"]["optimizer.lr"] for c in children) == ["0.01", "0.02", "0.05"]
    for child in children:  # the retried bucket: every point again, whole, in a new worker
        assert child["status"] == "FINISHED" and server.steps(child["id"])[-1] == 150000
        assert child["tags"]["regfw.bucket"].startswith("bucket 1, 3 points") and child["tags"]["regfw.attempt"] == "2"
        assert child["tags"]["regfw.ray_node"] and child["tags"]["regfw.pid"] not in {r["tags"]["regfw.pid"] for r in running}
    dead = [r for r in server.runs("ray-stacked", "DELETED_ONLY") if r["id"] in {x["id"] for x in running}]
    assert len(dead) == 3 and all(r["status"] == "FAILED" and "worker died in attempt 1" in r["tags"]["regfw.failure"]
                                  for r in dead)


@pytest.mark.slow
def test_ctrl_c_ends_a_stacked_bucket_on_ray_with_every_point_killed(cluster):
    server = cluster["server"]
    proc = sweep(cluster, "ray-stacked-stop", "linear", "--set", "optimizer.lr=0.01,0.02,0.05", "--vectorize", *LONG)
    try:
        server.wait_for("ray-stacked-stop", lambda runs: len(runs) == 3 and all(server.steps(r["id"]) for r in runs), proc)
    except BaseException:
        proc.kill()
        raise
    _, parent, children = interrupted(cluster, "ray-stacked-stop", proc)
    assert parent["status"] == "KILLED" and len(children) == 3
    epochs = {child["tags"]["regfw.epochs_done"] for child in children}
    for child in children:  # stopped inside the stacked task: each point KILLED at the same epoch, metrics kept
        assert child["status"] == "KILLED" and child["tags"]["regfw.failure"].startswith("interrupted at epoch")
        assert child["tags"]["regfw.bucket"].startswith("bucket 1, 3 points") and server.steps(child["id"])
    assert len(epochs) == 1


@pytest.mark.slow
def test_a_killed_worker_fails_its_point_and_ctrl_c_ends_the_running_ones_killed(cluster):
    server = cluster["server"]
    proc = sweep(cluster, "ray-faults", "linear", "--seeds", "0,1,2", *LONG)
    try:
        first = server.wait_for("ray-faults", lambda runs: len(runs) == 2, proc)  # 2 CPUs: the third point waits
        victim = first[0]
        os.kill(int(victim["tags"]["regfw.pid"]), signal.SIGKILL)
        # The sweep goes on: the third point starts; both running points record metrics.
        server.wait_for("ray-faults", lambda runs: len(runs) == 3 and all(
            server.steps(r["id"]) for r in runs if r["status"] == "RUNNING") and sum(
            r["status"] == "RUNNING" for r in runs) == 2, proc)
    except BaseException:
        proc.kill()
        raise
    out, parent, children = interrupted(cluster, "ray-faults", proc)
    children = {r["id"]: r for r in children}
    assert parent["status"] == "KILLED" and parent["tags"]["regfw.sweep_failed"] == "1"
    dead = children.pop(victim["id"])
    assert dead["status"] == "FAILED"
    assert "worker died" in dead["tags"]["regfw.failure"] and f"pid {victim['tags']['regfw.pid']}" in dead["tags"]["regfw.failure"]
    failed_line = next(line for line in out.splitlines() if "FAILED" in line)
    assert failed_line.startswith(f"[{int(dead['tags']['regfw.sweep_index']) + 1}/3] FAILED")
    assert "worker died in attempt 1" in failed_line
    for child in children.values():  # interrupted inside the point: KILLED, its metrics kept
        assert child["status"] == "KILLED", child
        assert child["tags"]["regfw.failure"].startswith("interrupted at epoch")
        assert server.steps(child["id"]) and int(child["tags"]["regfw.epochs_done"]) >= 20


@pytest.mark.slow
def test_a_plugin_that_does_not_import_on_the_workers_fails_its_point_in_one_line(cluster, tmp_path):
    # The plugin loads here; on the workers a module of the same name shadows it (via the runtime env).
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "regfw_quadratic.py").write_text("raise ImportError('not installed on this node')\n")
    env_file = tmp_path / "runtime_env.yaml"
    env_file.write_text(f"env_vars:\n  PYTHONPATH: {shadow}\n")
    proc = sweep(cluster, "ray-plugin", "quadratic-param", "--epochs", 5, "--ray-runtime-env", env_file)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, out + err
    one_line_error(err, "1 of 1 sweep points failed")
    line = next(line for line in out.splitlines() if "FAILED" in line)
    assert "plugin 'quadratic'" in line and "on worker node" in line and "not installed on this node" in line
    assert "Traceback" not in out + err
    runs = server_runs = cluster["server"].runs("ray-plugin")
    assert [r["tags"].get("regfw.role") for r in server_runs] == ["sweep"]  # no child run: it never started
    assert runs[0]["status"] == "FAILED"


@pytest.mark.slow
def test_a_cluster_without_the_gpus_asked_for_is_one_line_and_no_run(cluster):
    proc = sweep(cluster, "ray-gpu", "linear", "--epochs", 5, "--gpus-per-point", 1)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    one_line_error(err, "no node of the Ray cluster", "1 GPUs")
    assert cluster["server"].runs("ray-gpu") == []


def test_a_remote_cluster_refuses_a_local_store_before_anything_starts(invoke, tmp_path):
    store = tmp_path / "store" / "mlflow.db"
    result = invoke("sweep", "linear", "--epochs", 5, "--backend", "ray", "--ray-address", "10.0.0.1:6379",
                    "--tracking-uri", f"sqlite:///{store}")
    assert result.exit_code == 1
    one_line_error(result.stderr, "cannot write to the local store", "mlflow server", "http://")
    assert not store.parent.exists()


def test_an_unreachable_cluster_is_one_line(invoke, tmp_path):
    with socket.socket() as tracking:  # a port that accepts connections: the store is reachable, Ray is not
        tracking.bind(("127.0.0.1", 0))
        tracking.listen()
        started = time.monotonic()
        result = invoke("sweep", "linear", "--epochs", 5, "--backend", "ray", "--ray-address",
                        f"127.0.0.1:{free_port()}", "--tracking-uri", f"http://127.0.0.1:{tracking.getsockname()[1]}")
    assert result.exit_code == 1
    one_line_error(result.stderr, "the Ray cluster at 127.0.0.1:", "is unreachable")
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("args, needle", [
    (["--retries", "1"], "--retries goes with --backend ray"),
    (["--backend", "ray", "--jobs", "2"], "--jobs is for --backend local"),
    (["--backend", "ray", "--ray-runtime-env", "missing.yaml"], "--ray-runtime-env not found"),
])
def test_ray_options_misused_are_one_line(invoke, store, args, needle):
    result = invoke("sweep", "linear", "--epochs", 5, "--tracking-uri", store, *args)
    assert result.exit_code == 1
    one_line_error(result.stderr, needle)


@pytest.mark.slow
def test_a_local_ray_instance_runs_the_sweep_into_sqlite_quietly(regfw_script, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'regfw[ray]')")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = regfw_script("sweep", "linear", "--seeds", "0,1", "--epochs", 30, "--backend", "ray",
                          "--tracking-uri", store, env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no token-authentication notice, no Ray log lines
    assert "a local Ray instance" in result.stdout and "2 finished, 0 failed" in result.stdout
    from mlflow import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("linear").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.params["seed"] for r in children) == ["0", "1"]


@pytest.mark.parametrize("made_cancellable", [True, False])
def test_a_point_can_be_cancelled_when_its_worker_inherited_an_ignored_sigint(made_cancellable):
    """ray.cancel interrupts a task with ``_thread.interrupt_main()``, a no-op while SIGINT is
    ignored - as in the workers of a head started in a script's background (or from pytest-xdist's
    workers). ``run_on_worker`` first gives SIGINT Python's handler back; without that (the
    control case) the interrupt is lost."""
    setup = "from regfw.training.ray_backend import cancellable; cancellable(); " if made_cancellable else ""
    code = f"import _thread, time; {setup}_thread.interrupt_main(); time.sleep(3); print('ran on')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    if made_cancellable:
        assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr and "ran on" not in proc.stdout
    else:
        assert proc.returncode == 0 and "ran on" in proc.stdout
