"""Sweeps: a grid of overrides becomes one MLflow parent run and one child run per point.

Grid syntax (``--set KEY=VALUES``, see docs/comparing.md):

- ``;`` always separates axis values: ``--set optimizer.lr=0.1;0.01``.
- For a scalar parameter ``,`` separates them too: ``--set optimizer.lr=0.001,0.01,0.1``.
- For a list-typed parameter (``model.hidden``, ``train.metrics``) a comma list is ONE value:
  ``--set model.hidden=64,64`` is the single value ``[64, 64]``. Its axis values are separated
  by ``;`` (``model.hidden=64;256;64,64``) or written as bracketed lists separated by commas
  (``model.hidden=[64],[256],[64,64]``).
- A ``--set`` with a single value is an ordinary override shared by every point.

Every point is resolved and validated before anything is written, so a bad key or value is one
line and no run. The store, the MLflow experiment and the parent run exist before the first
point starts; with ``jobs > 1`` the points run in spawned worker processes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field

from regfw.errors import RegfwError

AXIS_SEP = ";"
SWEEP_ROLE_TAG = "regfw.role"  # "sweep" on parent runs
SWEEP_ID_TAG = "regfw.sweep_id"
SWEEP_POINT_TAG = "regfw.sweep_point"
SWEEP_INDEX_TAG = "regfw.sweep_index"
PARENT_TAG = "mlflow.parentRunId"
MAX_EXIT = 100  # the sweep's exit code is the number of failed points, at most this
STOP_SECONDS = 120  # after Ctrl-C/SIGTERM, how long running points get to flush and end as KILLED


@dataclass
class Axis:
    key: str
    values: list[str]  # raw texts, typed later exactly like a --set value
    list_typed: bool = False

    def shown(self) -> str:
        """``lr=0.001,0.01,0.1``: the short key and the values as the user would type them."""
        short = self.key.rsplit(".", 1)[-1]
        return f"{short}=" + (AXIS_SEP if self.list_typed else ",").join(self.values)


@dataclass
class Point:
    index: int
    values: dict  # axis key -> raw text
    config: object = None  # regfw.config.Config
    run_name: str = ""

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values.items())


@dataclass
class Grid:
    experiment: str
    axes: list[Axis]
    points: list[Point]


@dataclass
class PointTask:
    """What a worker needs to run one point (picklable: it crosses into spawned processes)."""

    index: int
    config: object
    run_name: str
    uri: str
    experiment_name: str
    tags: dict
    progress: bool = False


@dataclass
class PointResult:
    index: int
    status: str
    run_id: str | None = None
    error: str | None = None
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)
    exit_code: int = 0


# -- grid parsing ---------------------------------------------------------------------------
def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside brackets: ``[1,2],[3]`` -> ``["[1,2]", "[3]"]``."""
    pieces, depth, current = [], 0, []
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == sep and depth == 0:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return pieces


def split_values(key: str, text: str, list_typed: bool) -> list[str]:
    """The axis values of one ``--set KEY=TEXT`` (a single value means: not an axis)."""
    if AXIS_SEP in text:
        pieces = text.split(AXIS_SEP)
    elif list_typed:
        pieces = split_top_level(text)
        bracketed = all(p.strip().startswith("[") and p.strip().endswith("]") for p in pieces)
        if len(pieces) > 1 and not bracketed:
            pieces = [text]  # "64,256" for a list parameter is the one list [64, 256]
    else:
        pieces = split_top_level(text)
    pieces = [p.strip() for p in pieces]
    if len(pieces) > 1 and any(p == "" for p in pieces):
        raise RegfwError(f"--set {key}={text}: empty value in the list of sweep values")
    seen = set()
    for piece in pieces:
        if piece in seen:
            raise RegfwError(f"--set {key}={text}: value '{piece}' is given twice")
        seen.add(piece)
    return pieces


def _is_list_param(registry, key: str, names: dict) -> bool:
    """Whether ``key`` names a list-typed parameter for the component(s) it may refer to."""
    from regfw.config import PARTS, TRAIN_SCHEMA

    section, _, sub = key.partition(".")
    if section == "train" and sub in TRAIN_SCHEMA:
        return TRAIN_SCHEMA[sub].type is list
    if section in PARTS and sub:
        for name in names.get(section, ()):
            try:
                entry = registry.get(section, name)
            except RegfwError:
                continue
            param = entry.params.get(sub)
            if param is not None and param.type is list:
                return True
    return False


def parse_seeds(text: str | None) -> list[str] | None:
    """``--seeds 0,1,2`` or a range ``0-4`` (inclusive)."""
    if text is None:
        return None
    text = text.strip()
    if "-" in text and "," not in text:
        low, _, high = text.partition("-")
        try:
            low_n, high_n = int(low), int(high)
        except ValueError:
            raise RegfwError(f"--seeds expects integers like 0,1,2 or a range 0-4, got '{text}'") from None
        if high_n < low_n:
            raise RegfwError(f"--seeds range {text} is empty")
        return [str(n) for n in range(low_n, high_n + 1)]
    seeds = split_values("seed", text, False)
    for seed in seeds:
        try:
            if int(seed) < 0:
                raise ValueError
        except ValueError:
            raise RegfwError(f"--seeds expects non-negative integers like 0,1,2, got '{seed}'") from None
    return seeds


def build_grid(registry, experiment: str, *, sets=(), seeds: str | None = None, config_file: dict | None = None,
               swaps: dict | None = None, flags: dict | None = None) -> Grid:
    """Parse the axes and resolve (and so validate) every point's configuration."""
    from regfw.cli.run import default_run_name
    from regfw.config import PARTS, parse_set, resolve, split_assignment

    swaps = {k: v for k, v in (swaps or {}).items() if v is not None}
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    registry.get("experiment", experiment)  # an unknown experiment: did-you-mean now

    parsed = [split_assignment(item, "optimizer.lr=0.1,0.01") for item in sets]
    keys = [key for key, _ in parsed]
    for key in keys:
        if keys.count(key) > 1:
            raise RegfwError(f"--set {key} is given twice; put all its sweep values in one --set")

    # Which component each part may be, to know whether a key is list-typed.
    base = resolve(registry, experiment, config_file=config_file, swaps=swaps)
    names = {part: [getattr(base, part).name] for part in PARTS}
    for key, text in parsed:
        if key in PARTS:
            names[key] = split_values(key, text, False)

    axes: list[Axis] = []
    slots: list[tuple[str, object]] = []  # (key, fixed text) or (key, Axis), in the user's order
    for key, text in parsed:
        list_typed = _is_list_param(registry, key, names)
        values = split_values(key, text, list_typed)
        if len(values) > 1:
            axis = Axis(key, values, list_typed)
            axes.append(axis)
            slots.append((key, axis))
        else:
            slots.append((key, text))
    seed_values = parse_seeds(seeds)
    if seed_values is not None:
        if "seed" in keys:
            raise RegfwError("give the seeds either with --seeds or with --set seed=..., not both")
        axis = Axis("seed", seed_values)
        if len(seed_values) > 1:
            axes.append(axis)
            slots.append(("seed", axis))
        else:
            slots.append(("seed", seed_values[0]))

    flag_keys = set(flags) | set(swaps)
    for axis in axes:
        if axis.key in flag_keys:
            option = "--" + {"optimizer.lr": "lr", "train.epochs": "epochs", "train.batch_size": "batch-size",
                             "train.log_every": "log-every"}.get(axis.key, axis.key)
            raise RegfwError(f"{axis.key} is swept by --set/--seeds and also fixed by {option}; drop one")

    points = []
    for index, combo in enumerate(itertools.product(*(axis.values for axis in axes))):
        chosen = {axis.key: value for axis, value in zip(axes, combo)}
        texts = [f"{key}={chosen[key] if isinstance(slot, Axis) else slot}" for key, slot in slots]
        try:
            config = resolve(registry, experiment, config_file=config_file, sets=parse_set(texts),
                             swaps=swaps, flags=flags)
        except RegfwError as exc:
            where = " ".join(f"{k}={v}" for k, v in chosen.items())
            raise RegfwError(f"{exc} (sweep point {where})" if where else str(exc)) from None
        point = Point(index, chosen, config)
        point.run_name = default_run_name(registry, config)
        points.append(point)
    return Grid(experiment, axes, points)


# -- running --------------------------------------------------------------------------------
_RUNNING = False  # a point is training in this process
_STOPPED = False  # this worker was told to stop: it starts no further point
NOT_RUN = "NOT_RUN"


def _worker_init() -> None:
    """Spawned workers: Ctrl-C is handled by the parent, SIGTERM ends the point like `run` does
    (flushed, KILLED) and keeps the worker from starting any point queued after it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)


def _worker_sigterm(signum, frame):
    global _STOPPED
    from regfw.runner import Interrupted

    _STOPPED = True
    if _RUNNING:
        raise Interrupted(128 + signum)


def run_point(task: PointTask) -> PointResult:
    """Run one point with ``runner.execute`` as a child of the sweep's parent run."""
    global _RUNNING
    from regfw.output import Reporter
    from regfw.plugins import get_plugins
    from regfw.runner import Interrupted, execute
    from regfw.tracking import MlflowTracker

    class ChildTracker(MlflowTracker):
        def start(self, run_name, params, tags):
            return super().start(run_name, params, dict(tags) | task.tags)

    if _STOPPED:
        return PointResult(task.index, NOT_RUN)
    tracker = ChildTracker(task.uri, task.experiment_name)
    reporter = Reporter("bar" if task.progress else "quiet")
    _RUNNING = True
    try:
        outcome = execute(task.config, get_plugins(), tracker, run_name=task.run_name, reporter=reporter)
    except (KeyboardInterrupt, Interrupted) as exc:  # stopped while the run was being set up
        _end_quietly(tracker, "KILLED")
        return PointResult(task.index, "KILLED", tracker.run_id, "interrupted",
                           exit_code=getattr(exc, "exit_code", 130))
    except Exception as exc:  # noqa: BLE001 - e.g. the store went away; one point must not end the sweep
        _end_quietly(tracker, "FAILED")
        text = str(exc) if isinstance(exc, RegfwError) else f"{type(exc).__name__}: {exc}"
        return PointResult(task.index, "FAILED", tracker.run_id, text, exit_code=1)
    finally:
        _RUNNING = False
    return PointResult(task.index, outcome.status, outcome.run_id, outcome.error, outcome.seconds,
                       dict(outcome.summary), outcome.exit_code)


def _end_quietly(tracker, status: str) -> None:
    """A run created before its point was stopped must not stay RUNNING in the store."""
    if tracker.run_id is None or tracker.client is None:
        return
    try:
        tracker.end(status)
    except Exception:  # noqa: BLE001
        pass


@dataclass
class SweepResult:
    sweep_id: str
    parent_run_id: str
    status: str
    results: list[PointResult]
    not_run: int = 0
    exit_code: int = 0

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.status == "FAILED")


def _common_params(points: list[Point]) -> dict:
    flats = [p.config.flat_params() for p in points]
    first = flats[0]
    return {k: v for k, v in first.items() if all(f.get(k) == v for f in flats[1:])}


def sweep_name(grid: Grid) -> str:
    axes = " ".join(axis.shown() for axis in grid.axes)
    return f"{grid.experiment} sweep" + (f" {axes}" if axes else "")


def run_sweep(grid: Grid, uri: str, experiment_name: str, *, jobs: int = 1, progress: bool = False,
              on_result=None) -> SweepResult:
    """Create the parent run, run every point (sequentially or in ``jobs`` processes), close the parent."""
    from regfw.device import resolve_device
    from regfw.runner import Interrupted
    from regfw.tracking import MlflowTracker

    for device in sorted({p.config.device for p in grid.points}):
        resolve_device(device)  # a missing device is bad input: fail before any run exists

    sweep_id = uuid.uuid4().hex[:12]
    parent = MlflowTracker(uri, experiment_name).open()  # creates the store and the experiment
    common = _common_params(grid.points)
    params = dict(common) | {f"sweep.{a.key}": (AXIS_SEP if a.list_typed else ",").join(a.values) for a in grid.axes}
    axes_text = ", ".join(a.key for a in grid.axes) or "nothing"
    tags = {
        SWEEP_ROLE_TAG: "sweep",
        SWEEP_ID_TAG: sweep_id,
        "regfw.experiment": grid.experiment,
        "regfw.sweep_points": len(grid.points),
        "regfw.sweep_axes": json.dumps({a.key: a.values for a in grid.axes}),
        "mlflow.note.content": f"regfw sweep {sweep_id}: {len(grid.points)} points over {axes_text}",
    }
    parent_id = parent.start(sweep_name(grid), params, tags)

    tasks = []
    for point in grid.points:
        child_tags = {PARENT_TAG: parent_id, SWEEP_ID_TAG: sweep_id, SWEEP_POINT_TAG: point.label() or "-",
                      SWEEP_INDEX_TAG: point.index}
        tasks.append(PointTask(point.index, point.config, point.run_name, uri, experiment_name, child_tags,
                               progress=progress and jobs == 1))
    results: list[PointResult] = []
    interrupted: BaseException | None = None

    def record(result: PointResult) -> None:
        if result.status == NOT_RUN:
            return
        results.append(result)
        if on_result is not None:
            on_result(result, grid.points[result.index])

    previous = signal.signal(signal.SIGTERM, _main_sigterm)
    try:
        if jobs <= 1:
            for task in tasks:
                result = run_point(task)
                record(result)
                if result.status == "KILLED":
                    interrupted = Interrupted(result.exit_code or 130)
                    break
        else:
            interrupted = _run_parallel(tasks, jobs, record)
    except (KeyboardInterrupt, Interrupted) as exc:
        interrupted = exc
    finally:
        signal.signal(signal.SIGTERM, previous)
        results.sort(key=lambda r: r.index)
        failed = sum(1 for r in results if r.status == "FAILED")
        not_run = len(tasks) - len(results)
        status = "KILLED" if interrupted else ("FAILED" if failed else "FINISHED")
        end_tags = {"regfw.sweep_failed": failed, "regfw.sweep_finished": sum(r.status == "FINISHED" for r in results)}
        if not_run:
            end_tags["regfw.sweep_not_run"] = not_run
        if failed:
            end_tags["regfw.failure"] = f"{failed} of {len(tasks)} points failed"
        elif interrupted:
            end_tags["regfw.failure"] = "interrupted"
        try:
            parent.set_tags(end_tags)
        finally:
            parent.end(status)
    if interrupted is not None:
        code = getattr(interrupted, "exit_code", 130)
    else:
        code = min(failed, MAX_EXIT)
    return SweepResult(sweep_id, parent_id, status, results, not_run, code)


def _main_sigterm(signum, frame):
    from regfw.runner import Interrupted

    raise Interrupted(128 + signum)


def _run_parallel(tasks: list[PointTask], jobs: int, record) -> BaseException | None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from regfw.runner import Interrupted

    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)
    futures = {pool.submit(run_point, task): task for task in tasks}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                task = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    result = PointResult(task.index, "FAILED", error=f"worker process died: {exc}", exit_code=1)
                except Exception as exc:  # noqa: BLE001
                    result = PointResult(task.index, "FAILED", error=f"{type(exc).__name__}: {exc}", exit_code=1)
                record(result)
        pool.shutdown(wait=True)
        return None
    except (KeyboardInterrupt, Interrupted) as exc:
        # Stop what has not started; ask running points to end as KILLED (flushed), by pid.
        for future in pending:
            future.cancel()
        for process in list(getattr(pool, "_processes", {}).values()):
            if process.is_alive():
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + STOP_SECONDS
        for future in list(pending):
            if future.cancelled():
                continue
            try:
                record(future.result(timeout=max(0.1, deadline - time.monotonic())))
            except Exception:  # noqa: BLE001 - the worker was stopped before it reported
                pass
        stuck = [p for p in getattr(pool, "_processes", {}).values() if p.is_alive()] \
            if any(not f.done() for f in pending) else []
        for process in stuck:  # did not end its point in time: our own worker, by pid
            try:
                os.kill(process.pid, signal.SIGKILL)
            except OSError:
                pass
        pool.shutdown(wait=not stuck, cancel_futures=True)
        return exc


def print_point(result: PointResult, point: Point, total: int, stream=None) -> None:
    stream = stream or sys.stdout
    loss = result.summary.get("final_test_loss", result.summary.get("final_train_loss"))
    shown = f"  final loss {loss:.6g}" if loss is not None else ""
    width = len(str(total))
    line = f"[{result.index + 1:>{width}}/{total}] {result.status:<8} {point.run_name}{shown}  ({result.seconds:.1f} s)"
    if result.error:
        line += f"  {result.error}"
    print(line, file=stream, flush=True)
