"""Row 11 of benchmarks/run.py: what a run costs besides training, whole processes side by side.

1. CPU seconds (user + system, the child's own ``getrusage``) of ``regfw run linear --epochs 1 -q``
   on an existing SQLite store, against ``python -c "import torch, mlflow"``: the part of a run
   that is neither importing its two big dependencies nor training. Target ≤ 1.3.
2. A 200000-epoch ``quadratic-param`` process with tracking on against ``--no-track``: wall
   seconds of the whole process (start-up, store, training, metrics, artifacts). Target ≤ 1.05.
   The two processes of a round run at the same time, each pinned to its own CPU, and swap CPUs
   every round. Why: on a shared machine the speed of a CPU drifts by ±15% within minutes (other
   tenants on its sibling hyperthread); one after the other, a 25 s process and its partner saw
   different machines, and the ratio of the same two commands ranged 1.01-1.57 between rounds.
   Side by side at once, both see the same minute; swapping cancels a slower CPU. Even so, two
   identical commands run this way differed by up to ±9% in a round here.
3. The same two commands at one epoch, alternating: CPU seconds. Their difference is what tracking
   adds besides the training loop (store, run record, metric rows, artifacts), which bounds the
   part of (2)'s ratio that is not noise.
The one-epoch pairs alternate (A B, B A, ...) like every other row.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time


def _child(command: list[str], env: dict) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def _together(commands: dict[str, list[str]], cpus: list[int], env: dict) -> dict[str, tuple[float, float]]:
    """Start every command at once, the i-th pinned to ``cpus[i]``; (CPU seconds, wall seconds) of each."""
    started = {}
    for (name, command), cpu in zip(commands.items(), cpus):
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=lambda cpu=cpu: os.sched_setaffinity(0, {cpu}))
        started[name] = (process, start)
    results = {}
    by_pid = {process.pid: name for name, (process, _) in started.items()}
    while by_pid:  # whichever ends first: waiting for them in order would stretch an earlier one's wall time
        pid, status, usage = os.wait4(-1, 0)
        if pid not in by_pid:
            continue
        name = by_pid.pop(pid)
        process, start = started[name]
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        error = process.stderr.read()
        process.stderr.close()
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(commands[name])} failed: {error[-2000:]}")
        results[name] = (usage.ru_utime + usage.ru_stime, wall)
    return results


def side_by_side(rounds: int, commands: dict[str, list[str]], env: dict, progress: str) -> tuple[dict, dict]:
    """Wall and CPU seconds per command over ``rounds`` rounds run at once on two CPUs, swapped
    every round; one after the other (alternating) where this process may use fewer than two."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    walls = {name: [] for name in commands}
    cpus = {name: [] for name in commands}
    for r in range(rounds):
        if len(usable) >= 2:
            pinned = usable[:2] if r % 2 == 0 else usable[1::-1]
            measured = _together(commands, pinned, env)
        else:
            order = list(commands) if r % 2 == 0 else list(commands)[::-1]
            measured = {name: _child(commands[name], env) for name in order}
        for name, (cpu, wall) in measured.items():
            walls[name].append(wall)
            cpus[name].append(cpu)
        shown = "  ".join(f"{n} {walls[n][-1]:.3f}s" for n in commands)
        print(f"  {progress} round {r + 1}/{rounds}: {shown}", flush=True)
    return walls, cpus


def row_fixed_cost(args, tmp, regfw, alternate, Row) -> list:
    env = dict(os.environ)
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = str(args.threads)
    store = f"sqlite:///{tmp / 'fixed-cost' / 'mlflow.db'}"
    (tmp / "fixed-cost").mkdir(exist_ok=True)
    imports = [sys.executable, "-c", "import torch, mlflow"]
    one_epoch = [str(regfw), "run", "linear", "--epochs", "1", "-q", "--tracking-uri", store]
    epochs = args.fixed_cost_epochs
    tracked = [str(regfw), "run", "quadratic-param", "--epochs", str(epochs), "-q", "--tracking-uri", store]
    untracked = [str(regfw), "run", "quadratic-param", "--epochs", str(epochs), "-q", "--no-track"]
    if args.threads > 0:
        for command in (one_epoch, tracked, untracked):
            command += ["--threads", str(args.threads)]
    print("row 11: a run's fixed cost", flush=True)
    _child(one_epoch, env)  # creates the store: the row measures a run on an existing one
    _child(imports, env)
    cpu = alternate(args.pairs, {"python -c 'import torch, mlflow'": lambda: _child(imports, env)[0],
                                 "regfw run linear --epochs 1": lambda: _child(one_epoch, env)[0]}, "fixed cost")
    rows = [Row(11, "CPU seconds of a whole process: regfw run linear --epochs 1 -q (existing store) / "
                "python -c 'import torch, mlflow'", "python -c 'import torch, mlflow'", cpu,
                target={"regfw run linear --epochs 1": ("<=", 1.3, "ratio")})]
    print(f"row 11: quadratic-param {epochs} epochs, tracking on / --no-track", flush=True)
    _child(tracked[:4] + ["10"] + tracked[5:], env)  # the experiment exists: the row measures runs on it
    # What tracking adds besides the training loop, at one epoch (alternating): the part of the
    # long pair's ratio that is not noise is this over the long run's training time.
    short = {"--no-track": untracked[:4] + ["1"] + untracked[5:], "tracking on": tracked[:4] + ["1"] + tracked[5:]}
    fixed = alternate(args.pairs, {name: (lambda c=command: _child(c, env)[0]) for name, command in short.items()},
                      "tracking, 1 epoch")
    walls, cpus = side_by_side(args.pairs + args.pairs % 2, {"--no-track": untracked, "tracking on": tracked}, env,
                               "tracking (at once, CPUs swapped every round)")
    rows.append(Row(11, f"wall seconds of a whole quadratic-param process, {epochs} epochs: tracking on / --no-track "
                    "(both at once, one CPU each, swapped every round)",
                    "--no-track", walls, target={"tracking on": ("<=", 1.05, "ratio")}))
    rows.append(Row(11, "the same processes' CPU seconds", "--no-track", cpus))
    rows.append(Row(11, "CPU seconds of a 1-epoch quadratic-param process: tracking on / --no-track (alternating; "
                    "the difference is tracking's fixed cost)", "--no-track", fixed))
    return rows
