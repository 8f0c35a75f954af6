"""Regenerate docs/ui.md's screenshots of the MLflow UI (``make ui-screenshots``).

The pictures of the click-through (docs/img/ui-*.png, artifact-svg.png) come from the browser tests
themselves, run with ``REGFW_UI_SHOTS=docs/img``: a picture in the docs is a page a test checked.
``tune-compare.png`` is MLflow's compare view (parallel coordinates) of a `regfw tune` study's
finished trials, from a store made here in a temporary folder and removed afterwards.

Needs Debian's chromium and playwright, as the tests do. About five minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"
BIN = Path(sys.executable).parent
TESTS = ["tests/test_ui_clickthrough.py",
         "tests/test_ui.py::test_the_ui_in_a_browser_shows_runs_curves_first_and_distinct_names",
         "tests/test_ui.py::test_a_runs_svg_charts_show_as_images_in_the_artifacts_tab"]
TUNE = ["tune", "quadratic-linear", "--space", "optimizer.lr=log(1e-5,1e-1)",
        "--space", "optimizer.momentum=float(0,0.95)", "--trials", "12", "--epochs", "500", "--vectorize"]
VIEW = {"width": 1440, "height": 900}


def from_tests(out: Path) -> None:
    env = dict(os.environ, REGFW_UI_SHOTS=str(out), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *TESTS],
                   cwd=ROOT, env=env, check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tune_compare(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="regfw-ui-shots-") as folder:
        store = f"sqlite:///{folder}/mlruns.db"
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        subprocess.run([str(BIN / "regfw"), *TUNE, "--tracking-uri", store, "-q"], cwd=folder, env=env,
                       check=True)
        import mlflow

        client = mlflow.MlflowClient(store)
        experiment = client.get_experiment_by_name("quadratic-linear").experiment_id
        # The study's finished trials (a trial that diverged is FAILED and has no final loss).
        trials = [r for r in client.search_runs([experiment], "attributes.status = 'FINISHED'")
                  if r.data.tags.get("mlflow.parentRunId")]
        port = _free_port()
        ui = subprocess.Popen([str(BIN / "regfw"), "ui", "--tracking-uri", store, "--port", str(port)],
                              stdout=subprocess.PIPE, text=True, cwd=folder, env=env)
        try:
            first = ui.stdout.readline()
            base = re.search(r"(http://\S+?)/#", first).group(1)
            runs = json.dumps([t.info.run_id for t in trials])
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
                page = browser.new_context(viewport=VIEW).new_page()
                page.set_default_timeout(300_000)
                page.goto(f"{base}/#/compare-runs?runs={runs}&experiments={json.dumps([experiment])}")
                page.get_by_text("Parallel Coordinates Plot").wait_for()
                page.locator(".js-plotly-plot").first.wait_for()
                time.sleep(2)  # plotly's transition
                page.screenshot(path=str(out / "tune-compare.png"))
                browser.close()
        finally:
            ui.send_signal(signal.SIGTERM)
            ui.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMG, help="where the pictures go (default: docs/img)")
    parser.add_argument("--only", choices=["tests", "tune"], help="one half only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only != "tune":
        from_tests(args.out)
    if args.only != "tests":
        tune_compare(args.out)


if __name__ == "__main__":
    main()
