"""Row 11 of benchmarks/run.py: what a run costs besides training, whole processes side by side.

1. CPU seconds (user + system, the child's own ``getrusage``) of ``regfw run linear --epochs 1 -q``
   on an existing SQLite store, against ``python -c "import torch, mlflow"``: the part of a run
   that is neither importing its two big dependencies nor training. Target ≤ 1.3.
2. A 200000-epoch ``quadratic-param`` process with tracking on against ``--no-track``: wall
   seconds of the whole process (start-up, store, training, metrics, artifacts). Target ≤ 1.05.
Each pair alternates (A B, B A, ...) like every other row.
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
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {"--no-track": [], "tracking on": []}

    def measure(name, command):
        def once():
            c, w = _child(command, env)
            cpus[name].append(c)
            return w
        return once

    walls = alternate(args.pairs, {"--no-track": measure("--no-track", untracked),
                                   "tracking on": measure("tracking on", tracked)}, "tracking")
    rows.append(Row(11, f"wall seconds of a whole quadratic-param process, {epochs} epochs: tracking on / --no-track",
                    "--no-track", walls, target={"tracking on": ("<=", 1.05, "ratio")}))
    rows.append(Row(11, "the same processes' CPU seconds", "--no-track", cpus))
    return rows
