"""Row 12 of benchmarks/run.py: 16 tiny sweep points through ``--backend ray`` against ``--jobs 2``.

Both as a user runs them: a real ``regfw sweep`` process into a fresh SQLite store, 16 ``linear``
points differing in seed. Ray's variant starts a local Ray instance (as many CPUs as the machine
has) and reports how long that took ("ready in X s"); that start is reported on its own and taken
out of Ray's per-point figure, which is (wall time - Ray's start) / 16. ``--jobs 2``'s per-point
figure is its wall time / 16 (its process pool starts inside that time). Reach, not speed, is what
Ray is for: on one machine the ratio says what a point costs through Ray's scheduler and workers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

POINTS = 16


def row_ray(args, tmp: Path, alternate, Row) -> list:
    try:
        import ray  # noqa: F401 - only whether it is installed
    except ImportError:
        print("row 12: skipped, Ray is not installed (pip install 'regfw[ray]')", flush=True)
        return []
    regfw = str(Path(sys.executable).with_name("regfw"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGFW_", "RAY_")) and k != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"
    starts: list[float] = []
    walls = {"--jobs 2": [], "--backend ray": []}

    def sweep(name: str, extra: list[str]):
        def run() -> float:
            store = tmp / f"ray-row-{len(walls[name])}-{name.strip('-').replace(' ', '-')}"
            command = [regfw, "sweep", "linear", "--seeds", f"0-{POINTS - 1}", "--epochs", str(args.ray_epochs),
                       "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}", *extra]
            began = time.perf_counter()
            out = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, check=True).stdout
            wall = time.perf_counter() - began
            assert f"{POINTS} finished, 0 failed" in out, out
            walls[name].append(wall)
            if name == "--backend ray":
                start = float(re.search(r"ready in ([0-9.]+) s", out).group(1))
                starts.append(start)
                wall -= start
            return wall / POINTS
        return run

    print(f"row 12: {POINTS} linear points, --backend ray (local instance) against --jobs 2", flush=True)
    times = alternate(args.ray_rounds, {"--jobs 2": sweep("--jobs 2", ["--jobs", "2"]),
                                        "--backend ray": sweep("--backend ray", ["--backend", "ray"])}, "ray")
    return [Row(12, f"{POINTS} linear points of {args.ray_epochs} epochs: seconds per point, Ray (local instance, "
                   "its start taken out) / --jobs 2", "--jobs 2", times,
                note="reach, not speed: no target on one machine; Ray's start is reported apart",
                extra={"ray_start_s": starts, "wall_s": walls, "cpus": os.cpu_count()})]
