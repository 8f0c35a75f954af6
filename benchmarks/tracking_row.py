"""Row 2 of benchmarks/run.py, measured the whole-process way, and where tracking's CPU goes.

1. Whole processes, one after the other, the order rotated every round (alternating, as every row):
   ``regfw run quadratic-param --epochs N -q`` with ``--no-track``; the same command again (the
   control: what two identical processes differ by on this machine, printed beside the ratio it
   bounds); tracking on into an existing store (its experiment made beforehand); and tracking on
   as the first run into a new store (MLflow creates the schema; a fresh store each round,
   removed afterwards); and tracking on into the existing store through MLflow's own client
   (``regfw --no-direct-store``): its difference from the direct path is what the direct path
   saves a process. CPU seconds (user + system of that child, ``getrusage``) and wall seconds.
2. Inside one process (row 2's in-process runs): the CPU seconds spent in the tracker's own calls
   (opening the store, the run record, metric rows, status) and in writing the run's artifacts:
   what tracking adds to a process by construction, apart from how fast the training loop ran.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from collections import defaultdict


def child(command: list[str], env: dict) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


NO_TRACK, CONTROL = "--no-track", "--no-track again (control)"
EXISTING, NEW = "tracking on, existing store", "tracking on, first run into a new store"
CLIENT = "tracking on, existing store, regfw --no-direct-store (MLflow's client)"


def whole_processes(args, tmp, regfw, Row) -> list:
    epochs = args.tracking_process_epochs
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGFW_") and k != "MLFLOW_TRACKING_URI"}
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = str(args.threads)
    base = [str(regfw), "run", "quadratic-param", "--epochs", str(epochs), "-q"]
    if args.threads > 0:
        base += ["--threads", str(args.threads)]
    folder = tmp / "tracking-processes"
    folder.mkdir(exist_ok=True)
    existing = f"sqlite:///{folder / 'mlflow.db'}"
    child(base[:4] + ["1"] + base[5:] + ["--tracking-uri", existing], env)  # the store and its experiment
    fresh = {"round": 0}

    def new_store():
        fresh["round"] += 1
        place = folder / f"new-{fresh['round']}"
        try:
            return child(base + ["--tracking-uri", f"sqlite:///{place / 'mlflow.db'}"], env)
        finally:
            shutil.rmtree(place, ignore_errors=True)

    variants = {NO_TRACK: lambda: child(base + ["--no-track"], env),
                CONTROL: lambda: child(base + ["--no-track"], env),
                EXISTING: lambda: child(base + ["--tracking-uri", existing], env),
                CLIENT: lambda: child(base[:1] + ["--no-direct-store"] + base[1:] + ["--tracking-uri", existing], env),
                NEW: new_store}
    print(f"row 2 (whole processes): quadratic-param, {epochs} epochs", flush=True)
    cpus, walls = {name: [] for name in variants}, {name: [] for name in variants}
    names = list(variants)
    for r in range(args.pairs):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            cpu, wall = variants[name]()
            cpus[name].append(cpu)
            walls[name].append(wall)
        shown = "  ".join(f"{n} {cpus[n][-1]:.2f} CPU s" for n in names)
        print(f"  whole processes round {r + 1}/{args.pairs}: {shown} (load {_load()})", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    what = f"regfw run quadratic-param --epochs {epochs} -q, whole processes one after the other"
    # The fastest round of each variant is the one least slowed by other work on the machine.
    fastest = ", ".join(f"{name} {min(cpus[name]) / min(cpus[NO_TRACK]):.3f}" for name in names[1:])
    return [Row(2, f"{what}: CPU seconds (user + system), tracking / --no-track", NO_TRACK, cpus,
                target={EXISTING: ("<=", 1.05, "ratio")}, extra={"epochs": epochs},
                note=f"fastest round of each against --no-track's fastest: {fastest}"),
            Row(2, f"{what}: wall seconds of the same processes", NO_TRACK, walls, extra={"epochs": epochs})]


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


class TimedTracker:
    """A tracker whose every method call adds its CPU seconds to ``spent[name]`` (the row's
    in-process runs use it to say what the tracker itself costs)."""

    def __init__(self, tracker, spent: dict):
        object.__setattr__(self, "_tracker", tracker)
        object.__setattr__(self, "_spent", spent)

    def __getattr__(self, name):
        value = getattr(self._tracker, name)
        if not callable(value):
            return value
        spent = self._spent

        def timed(*a, **k):
            start = time.process_time()
            try:
                result = value(*a, **k)
            finally:
                spent[name] += time.process_time() - start
            return result if result is not self._tracker else self
        return timed

    def __setattr__(self, name, value):
        setattr(self._tracker, name, value)


def timed_artifacts(spent: dict):
    """``regfw.runner.write_artifacts`` timed into ``spent['artifacts']``, while the block runs."""
    import contextlib

    import regfw.runner as runner

    @contextlib.contextmanager
    def patched():
        original = runner.write_artifacts

        def write(*a, **k):
            start = time.process_time()
            try:
                return original(*a, **k)
            finally:
                spent["artifacts"] += time.process_time() - start
        runner.write_artifacts = write
        try:
            yield
        finally:
            runner.write_artifacts = original
    return patched()


def new_spent() -> dict:
    return defaultdict(float)
