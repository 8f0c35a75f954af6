"""``--backend ray``: sweep points as Ray tasks, on a local Ray instance or a Ray cluster.

The sibling of :mod:`regfw.training.pool` with the same contract: ``run_ray(tasks, record, options)``
calls ``record(result)`` as each point ends and returns the interrupt that stopped the sweep, if
any. :func:`connect` runs first, before the sweep's parent run exists: a store the workers cannot
write to, a cluster that does not answer or lacks the requested GPUs is one line and no run.

Each point is a plain :func:`regfw.training.points.run_point` on a worker, so a point's child run is
the same as under ``--jobs``; the worker adds where it ran (node, pid) to its tags. Ray's own task
retries are off: a point whose worker died is marked FAILED here, in the store, with the reason,
or run again under ``--retries`` (the dead attempt's run is tagged and soft-deleted, so the sweep
keeps one child per point).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlparse

from regfw.errors import RegfwError, one_line, squeeze
from regfw.interrupts import Interrupted
from regfw.store import check_reachable
from regfw.store import tags as T
from regfw.training.points import NOT_RUN, PointResult, PointTask, run_point

STOP_SECONDS = 120  # after Ctrl-C/SIGTERM, how long running points get to flush and end as KILLED
REACH_SECONDS = 5  # a cluster address that does not accept a connection within this is unreachable
SERVER_HINT = ("run an `mlflow server` the workers can reach (e.g. `mlflow server --host 0.0.0.0 --port 5000 "
               "--backend-store-uri sqlite:///mlflow.db`) and pass --tracking-uri http://HOST:5000")
PLUGIN_HINT = "install it in the cluster's environment or ship it with --ray-runtime-env (docs/scaling.md)"


@dataclass
class RayOptions:
    """How points go to Ray. ``address``: as Ray takes it (``auto``, ``host:port``, ``ray://host:10001``);
    None: a local instance on this machine (unless ``RAY_ADDRESS`` is set, as for Ray itself)."""

    address: str | None = None
    cpus_per_point: float = 1.0
    gpus_per_point: float = 0.0
    retries: int = 0
    runtime_env: dict | None = None
    announce: Callable[[str], None] | None = None  # one line once the cluster is ready
    keep: bool = False  # run_ray leaves Ray connected (a search hands it wave after wave)

    @property
    def target(self) -> str | None:
        return self.address or os.environ.get("RAY_ADDRESS") or None

    def where(self) -> str:
        return f"the Ray cluster at {self.target}" if self.target else "a local Ray instance"


MAX_RUNTIME_ENV_BYTES = 1_000_000  # pip lists and env_vars: kilobytes; a working_dir is shipped by path


def load_runtime_env(path: str) -> dict:
    """``--ray-runtime-env FILE``: a YAML or JSON mapping handed to Ray as it is (pip, working_dir, env_vars...)."""
    from regfw.files import load_yaml

    # Through the guarded reader, as --config: a FIFO, /dev/zero or an alias bomb is one line.
    value = load_yaml(path, "--ray-runtime-env", MAX_RUNTIME_ENV_BYTES, "a runtime_env is at most")
    if not isinstance(value, dict):
        raise RegfwError(f"--ray-runtime-env {path} must hold a mapping (pip:, working_dir:, env_vars:...), "
                         f"not {type(value).__name__}")
    return value


def connect(options: RayOptions, uri: str, points) -> None:
    """Reach Ray and check it can run these points; every refusal is one line, before any run exists."""
    scheme = urlparse(uri).scheme
    if options.target and scheme in ("", "file", "sqlite"):
        raise RegfwError(f"the workers of a Ray cluster cannot write to the local store {uri}: {SERVER_HINT}")
    devices = sorted({p.config.device for p in points if str(p.config.device).startswith("cuda")})
    if devices and not options.gpus_per_point:
        raise RegfwError(f"points on {devices[0]} need --gpus-per-point 1: Ray gives a task a GPU only if it asks")
    check_reachable(uri)  # cheap, and before Ray's start of several seconds
    if options.target:
        _check_reachable(options.target)
    try:
        import ray
    except ImportError:
        raise RegfwError("--backend ray needs Ray: pip install 'regfw[ray]'") from None
    started = time.monotonic()
    # Ray's Python logs (the token-authentication notice, "Started a local Ray instance") are not the
    # user's business; a failure still reaches them, as one line.
    kwargs = dict(logging_level=logging.ERROR, log_to_driver=False, runtime_env=options.runtime_env)
    if not options.target:
        kwargs |= dict(num_cpus=os.cpu_count(), include_dashboard=False)
    try:
        with _silent_stderr():
            ray.init(address=options.target, **kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever Ray raises, the user gets one line
        hint = ""
        if options.target and options.target != "auto" and os.environ.get("RAY_AUTH_MODE") != "token":
            # Ray sends its token only to an address it found itself, or when told to.
            hint = ("; if the cluster uses token authentication (Ray's default), set RAY_AUTH_MODE=token "
                    "and its token (~/.ray/auth_token or RAY_AUTH_TOKEN)")
        raise RegfwError(f"cannot connect to {options.where()}: {one_line(exc)}{hint}") from None
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        need = {"CPU": options.cpus_per_point, "GPU": options.gpus_per_point}
        if not any(all(n["Resources"].get(k, 0) >= v for k, v in need.items() if v) for n in nodes):
            have = "; ".join(_resources(n["Resources"]) for n in nodes) or "none"
            raise RegfwError(f"no node of {options.where()} has {_resources(need)} for a point "
                             f"(its nodes: {have}); lower --cpus-per-point/--gpus-per-point or add such a node")
    except BaseException:
        ray.shutdown()
        raise
    if options.announce is not None:
        total = ray.cluster_resources()
        options.announce(f"Ray: {options.where()}, {len(nodes)} node{'s' * (len(nodes) != 1)}, "
                         f"{_resources(total)} (ready in {time.monotonic() - started:.1f} s)")


@contextlib.contextmanager
def _silent_stderr():
    """Ray's C++ core prints a warning on the process's stderr for each retry while it connects (a
    wrong token: one a second for 20 s); the outcome reaches the user as one line instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _resources(values: dict) -> str:
    return ", ".join(f"{values.get(k, 0):g} {k}s" for k in ("CPU", "GPU"))


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable address for minutes, printing C++ warnings: try it once first."""
    if address in ("auto", "local"):
        return  # Ray finds (or refuses) the cluster this machine knows of, quickly
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise RegfwError(f"--ray-address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=REACH_SECONDS):
            pass
    except OSError as exc:
        raise RegfwError(f"the Ray cluster at {address} is unreachable ({exc.strerror or type(exc).__name__}); "
                         "is `ray start --head` running there, and the port open?") from None


def plugins_needed(config) -> dict[str, str]:
    """The plugins a point's parts come from, by name, with the distribution that ships each."""
    from regfw.plugins import get_plugins
    from regfw.registry import PARTS

    plugins = get_plugins()
    owners = {plugins.registry.get("experiment", config.experiment).plugin}
    owners |= {plugins.registry.get(part, getattr(config, part).name).plugin for part in PARTS}
    return {name: (plugins.info[name].distribution or plugins.info[name].module) for name in owners
            if name in plugins.info}


def run_on_worker(task: PointTask, needs: dict[str, str], attempt: int, watch=None) -> PointResult:
    """A Ray task: check the point's plugins load here, then run it like any sweep point (``watch``:
    a search's, asking the driver at the report points: :mod:`regfw.training.reports`)."""
    import ray

    from regfw.plugins import get_plugins

    cancellable()
    node = ray.util.get_node_ip_address()
    plugins = get_plugins()
    for name, distribution in sorted(needs.items()):
        info = plugins.info.get(name)
        why = ("is not installed" if info is None else "is disabled (REGFW_DISABLE_PLUGINS)"
               if info.status == "disabled" else None if info.status == "ok" else f"does not load ({info.error})")
        if why:
            return PointResult(task.index, "FAILED", error=squeeze(
                f"plugin '{name}' ({distribution}) {why} on worker node {node} ({socket.gethostname()}); "
                f"{PLUGIN_HINT}", 400), exit_code=1)
    task.tags = task.tags | {T.RAY_NODE: node, T.HOST: socket.gethostname(), T.PID: os.getpid()}
    if attempt > 1:
        task.tags[T.ATTEMPT] = attempt
    return run_point(task, watch=watch)


def cancellable() -> None:
    """Let ``ray.cancel`` interrupt this task. Ray raises its KeyboardInterrupt through
    ``_thread.interrupt_main()``, which does nothing while SIGINT is ignored - as it is in every
    worker of a head started in the background of a script (a shell starts background commands
    with SIGINT ignored, and workers inherit it): such a point would train on after Ctrl-C until
    the sweep force-kills it, its run never written as KILLED."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) in (
            signal.SIG_IGN, signal.SIG_DFL, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run_ray(tasks: list[PointTask], record, options: RayOptions, watches: dict | None = None,
            refill=None, jobs: int = 0) -> BaseException | None:
    """Run ``tasks`` as Ray tasks on the cluster :func:`connect` reached, calling ``record(result)``
    as each ends; return the interrupt that stopped them, if any. Leaves Ray at the end (unless
    ``options.keep``). A search's ``watches`` (by point index) are answered here as the tasks reach
    their report points (:mod:`regfw.training.reports`); its ``refill(n)`` hands up to n more
    (PointTask, watch or None) as points end, so ``jobs`` points stay out."""
    import ray

    remote = ray.remote(run_on_worker).options(num_cpus=options.cpus_per_point, num_gpus=options.gpus_per_point,
                                               max_retries=0, retry_exceptions=False)
    needs: dict = {}
    judges = None
    if watches or refill is not None:
        from regfw.training.reports import Judges, ray_channel

        judges = Judges(watches or {}, ray_channel(), max(len(tasks), jobs, len(watches or {})))

    def submit(task, attempt):
        if task.index not in needs:
            needs[task.index] = plugins_needed(task.config)
        asking = judges.asking(task.index) if judges is not None else None
        return remote.remote(task, needs[task.index], attempt, asking)

    running = {submit(task, 1): (task, 1) for task in tasks}
    try:
        while running:
            if judges is not None:  # answer report points promptly; a point's end can wait a little
                judges.answer(timeout=0.05)
                done, _ = ray.wait(list(running), num_returns=len(running), timeout=0)
            else:
                done, _ = ray.wait(list(running), num_returns=len(running), timeout=0.5)
            for ref in done:
                task, attempt = running.pop(ref)
                result = _result(ref, task, attempt, options.retries)
                if result is None:
                    running[submit(task, attempt + 1)] = (task, attempt + 1)
                else:
                    if judges is not None:
                        judges.release(task.index)
                    record(result)
            if done and refill is not None and len(running) < jobs:
                for task, watch in refill(jobs - len(running)):  # asked now that the ended ones are told
                    if watch is not None:
                        judges.add(task.index, watch)
                    running[submit(task, 1)] = (task, 1)
        return None
    except (KeyboardInterrupt, Interrupted) as exc:
        _stop(running, record)
        return exc
    finally:
        if judges is not None:
            judges.channel.close()
        if not options.keep:
            ray.shutdown()


def _result(ref, task: PointTask, attempt: int, retries: int, stopping: bool = False) -> PointResult | None:
    """What a finished Ray task means for its point; None: run it again (its worker died, retries left)."""
    import ray
    from ray.exceptions import RayError, RaySystemError, RayTaskError, TaskCancelledError

    try:
        return ray.get(ref)
    except TaskCancelledError:
        return PointResult(task.index, NOT_RUN)
    except (RayTaskError, RaySystemError) as exc:  # e.g. regfw itself does not import on the worker
        cause = getattr(exc, "cause", None) or exc
        return PointResult(task.index, "FAILED", error=f"the point could not run on a worker: {one_line(cause)}",
                           exit_code=1)
    except RayError as exc:  # the worker process or its node died: the run it was writing says RUNNING
        again = attempt <= retries and not stopping
        reason = f"worker died in attempt {attempt}: {squeeze(str(exc).splitlines()[0] if str(exc) else exc, 160)}"
        run_id, where = _settle_dead_run(task, reason + ("; retried" if again else ""), delete=again)
        if again:
            return None
        return PointResult(task.index, "FAILED", run_id, f"{reason}{where}", exit_code=1)


def _settle_dead_run(task: PointTask, reason: str, *, delete: bool, status: str = "FAILED") -> tuple[str | None, str]:
    """Mark the run a dead worker left RUNNING as ``status`` with ``reason`` (soft-deleted when the
    point is retried). Returns its id and where it ran (" on node N, pid P"), when it was created."""
    from regfw.store import open_client

    try:
        client = open_client(task.uri)
        experiment = client.get_experiment_by_name(task.experiment_name)
        runs = client.search_runs(
            [experiment.experiment_id], max_results=5,
            filter_string=(f"tags.`{T.SWEEP_ID}` = '{task.tags[T.SWEEP_ID]}' and "
                           f"tags.`{T.SWEEP_INDEX}` = '{task.index}' and attributes.status = 'RUNNING'"))
    except Exception:  # noqa: BLE001 - the store is unreachable: the point's result still says why
        return None, ""
    run_id, where = None, ""
    for run in runs:
        run_id, tags = run.info.run_id, run.data.tags
        where = f" on node {tags.get(T.RAY_NODE, '?')}, pid {tags.get(T.PID, '?')}"
        try:
            client.set_tag(run_id, T.FAILURE, reason + where)
            client.set_terminated(run_id, status)
            if delete:
                client.delete_run(run_id)
        except Exception:  # noqa: BLE001
            pass
    return (None if delete else run_id), where


def _stop(running: dict, record) -> None:
    """Cancel the queued points; interrupt the running ones (Ray raises KeyboardInterrupt in the task,
    which ends its run KILLED with its metrics); force-kill a worker that does not end in time."""
    import ray

    for ref in running:
        ray.cancel(ref, force=False)
    deadline = time.monotonic() + STOP_SECONDS
    pending = dict(running)
    while pending and time.monotonic() < deadline:
        done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
        for ref in done:
            task, attempt = pending.pop(ref)
            result = _result(ref, task, attempt, 0, stopping=True)
            if result is not None:
                record(result)
    for ref, (task, _) in pending.items():  # did not end its point in time
        ray.cancel(ref, force=True)
        _settle_dead_run(task, "interrupted; its worker did not stop in time and was killed", delete=False,
                         status="KILLED")
