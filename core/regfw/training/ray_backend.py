"""``--backend ray``: sweep points (or stacked buckets of them) as Ray tasks, on a local Ray instance
or a Ray cluster.

The sibling of :mod:`regfw.training.pool` with the same contract: ``run_ray(tasks, record, options)``
calls ``record(result)`` as each point ends and returns the interrupt that stopped the sweep, if
any. :func:`regfw.training.ray_cluster.connect` runs first, before the sweep's parent run exists.

Each point is a plain :func:`regfw.training.points.run_point` on a worker, so a point's child run is
the same as under ``--jobs``; a bucket (a task with its own ``run_in_worker``, :mod:`regfw.vectorize`)
trains its points stacked there as in a ``--jobs`` worker. The worker adds where it ran (node, pid)
to the tags. Ray's own task retries are off: a point whose worker died is marked FAILED here, in the
store, with the reason, or run again under ``--retries`` (the dead attempt's run is tagged and
soft-deleted, so the sweep keeps one child per point).
"""

from __future__ import annotations

import os
import socket
import time

from regfw.errors import one_line, squeeze
from regfw.interrupts import Interrupted
from regfw.store import tags as T
from regfw.training.points import NOT_RUN, PointResult, PointTask, each_result, run_point
from regfw.training.ray_cluster import RayOptions

STOP_SECONDS = 120  # after Ctrl-C/SIGTERM, how long running points get to flush and end as KILLED
PLUGIN_HINT = "install it in the cluster's environment or ship it with --ray-runtime-env (docs/scaling.md)"


def plugins_needed(config) -> dict[str, str]:
    """The plugins a point's parts come from, by name, with the distribution that ships each."""
    from regfw.plugins import get_plugins
    from regfw.registry import PARTS

    plugins = get_plugins()
    owners = {plugins.registry.get("experiment", config.experiment).plugin}
    owners |= {plugins.registry.get(part, getattr(config, part).name).plugin for part in PARTS}
    return {name: (plugins.info[name].distribution or plugins.info[name].module) for name in owners
            if name in plugins.info}


def run_on_worker(task, needs: dict[str, str], attempt: int, watch=None):
    """A Ray task: check the point's plugins load here, then run it like any sweep point (``watch``:
    a search's, asking the driver at the report points: :mod:`regfw.training.reports`), or a
    bucket's points stacked (a list of results)."""
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
            return _each_point(task, lambda point: PointResult(point.index, "FAILED", error=squeeze(
                f"plugin '{name}' ({distribution}) {why} on worker node {node} ({socket.gethostname()}); "
                f"{PLUGIN_HINT}", 400), exit_code=1))
    for point in points_of(task):
        point.tags = point.tags | {T.RAY_NODE: node, T.HOST: socket.gethostname(), T.PID: os.getpid()}
        if attempt > 1:
            point.tags[T.ATTEMPT] = attempt
    own = getattr(task, "run_in_worker", None)
    return own(task) if own is not None else run_point(task, watch=watch)


def points_of(task) -> list[PointTask]:
    """The points a task trains: itself, or a bucket's."""
    return list(task.tasks) if hasattr(task, "run_in_worker") else [task]


def _each_point(task, result_of):
    """``result_of(point)`` for a point, a list of them for a bucket (as the worker hands back)."""
    results = [result_of(point) for point in points_of(task)]
    return results if hasattr(task, "run_in_worker") else results[0]


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
            needs[task.index] = {k: v for p in points_of(task) for k, v in plugins_needed(p.config).items()}
        if judges is not None and hasattr(task, "run_in_worker"):
            return remote.remote(judges.for_task(task), needs[task.index], attempt)
        asking = judges.asking(task.index) if judges is not None else None
        return remote.remote(task, needs[task.index], attempt, asking)

    record = each_result(record)

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
                        for point in points_of(task):
                            judges.release(point.index)
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


def _result(ref, task, attempt: int, retries: int, stopping: bool = False):
    """What a finished Ray task means for its point (a list for a bucket's points); None: run it
    again (its worker died, retries left)."""
    import ray
    from ray.exceptions import RayError, RaySystemError, RayTaskError, TaskCancelledError

    try:
        return ray.get(ref)
    except TaskCancelledError:
        return _each_point(task, lambda point: PointResult(point.index, NOT_RUN))
    except (RayTaskError, RaySystemError) as exc:  # e.g. regfw itself does not import on the worker
        cause = getattr(exc, "cause", None) or exc
        return _each_point(task, lambda point: PointResult(
            point.index, "FAILED", error=f"the point could not run on a worker: {one_line(cause)}", exit_code=1))
    except RayError as exc:  # the worker process or its node died: the runs it was writing say RUNNING
        again = attempt <= retries and not stopping
        reason = f"worker died in attempt {attempt}: {squeeze(str(exc).splitlines()[0] if str(exc) else exc, 160)}"
        settled = {p.index: _settle_dead_run(p, reason + ("; retried" if again else ""), delete=again)
                   for p in points_of(task)}
        if again:
            return None
        return _each_point(task, lambda point: PointResult(
            point.index, "FAILED", settled[point.index][0], f"{reason}{settled[point.index][1]}", exit_code=1))


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
        for point in points_of(task):
            _settle_dead_run(point, "interrupted; its worker did not stop in time and was killed", delete=False,
                             status="KILLED")
