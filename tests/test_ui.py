"""`regfw ui`: the real MLflow UI over the store, looked at the way a user looks at it.

The browser test drives Debian's ``chromium`` through playwright; it skips (with the reason) where
either is missing. ``REGFW_UI_SHOTS=DIR`` keeps its screenshots (docs/img/ui-*.png and artifact-svg.png come
from it).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REGFW

STARTUP_SECONDS = 300


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start(store, port, experiments=1):
    """Start `regfw ui`; its first line says where, then one line per experiment (its runs' address)."""
    proc = subprocess.Popen([REGFW, "ui", "--tracking-uri", store, "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = [proc.stdout.readline()]
    assert lines[0].startswith(f"MLflow UI at http://127.0.0.1:{port}"), (lines, proc.stderr.read() if proc.poll() else "")
    lines += [proc.stdout.readline() for _ in range(experiments)]
    return proc, lines


def _group_alive(store: str) -> list[str]:
    """Processes still serving this store (the server and its worker), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if store in cmdline and ("mlflow" in cmdline or "uvicorn" in cmdline):
                found.append(cmdline)
    return found


def _stop_by_pid(proc, store, port, sig=signal.SIGTERM):
    """Stop `regfw ui` by its own pid only; it must take its whole server with it."""
    proc.send_signal(sig)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while (_group_alive(store) or _listening(port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return proc.returncode


@pytest.mark.slow
def test_a_taken_port_is_refused_in_one_line(store, invoke):
    assert invoke("run", "linear", "--epochs", 2, "--tracking-uri", store, "-q").exit_code == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([REGFW, "ui", "--tracking-uri", store, "--port", str(port)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"regfw: error: port {port} on 127.0.0.1 is already in use; "
                                                  "choose another with --port"]


@pytest.mark.slow
def test_ui_serves_the_store_and_sigterm_leaves_nothing_behind(invoke, store):
    assert invoke("run", "linear", "--epochs", 3, "--tracking-uri", store, "-q").exit_code == 0
    port = _free_port()
    proc, lines = _start(store, port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10",
                                    timeout=30) as response:
            body = response.read().decode()
        assert '"linear"' in body and '"Default"' not in body  # regfw's empty Default is hidden
        assert any(line.strip().startswith("linear: http://") for line in lines[1:])
        processes = _group_alive(store)
        assert 1 <= len(processes) <= 3, processes  # lean: the server and one worker, no job runner
    finally:
        code = _stop_by_pid(proc, store, port)
    assert code == 128 + signal.SIGTERM
    assert not _group_alive(store) and not _listening(port)


def _pids_serving(store: str) -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()
            and _serves(entry, store)]


def _serves(entry: Path, store: str) -> bool:
    try:
        cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return store in cmdline and ("mlflow" in cmdline or "uvicorn" in cmdline)


@pytest.mark.slow
def test_regfw_ui_killed_with_sigkill_takes_its_server_with_it(invoke, store):
    """SIGKILL leaves regfw no chance to stop the server: the server watches regfw's pid."""
    assert invoke("run", "linear", "--epochs", 2, "--tracking-uri", store, "-q").exit_code == 0
    port = _free_port()
    proc, _ = _start(store, port)
    server = _pids_serving(store)
    try:
        assert server and _listening(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (_group_alive(store) or _listening(port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_alive(store) and not _listening(port)
    finally:
        for pid in server:  # only if the assertion above failed: leave nothing serving
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- what a user sees in a browser ---------------------------------------------------------------
def _browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    return chromium, sync_api


@pytest.mark.slow
def test_the_ui_in_a_browser_shows_runs_curves_first_and_distinct_names(invoke, store, tmp_path):
    chromium, sync_api = _browser()
    shots = Path(os.environ.get("REGFW_UI_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    for args in (["run", "linear", "--epochs", 60], ["run", "quadratic-linear", "--epochs", 60],
                 ["sweep", "linear", "--set", "optimizer.lr=0.05,0.1", "--seeds", "0,1", "--epochs", 40]):
        assert invoke(*args, "--tracking-uri", store, "-q").exit_code == 0
    port = _free_port()
    proc, lines = _start(store, port, experiments=2)
    links = dict(re.match(r"\s+(\S+): (\S+)", line).groups() for line in lines[1:])
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.set_default_timeout(STARTUP_SECONDS * 1000)

            # The printed address opens the runs table: no GenAI overview, no click needed.
            page.goto(links["linear"])
            page.get_by_text("matching runs").wait_for()
            # regfw's app opens the sweep's parent expanded into its points: no click.
            page.get_by_text("lr=0.1 seed=1").wait_for()
            names = page.locator("a[href*='/runs/'] span").all_inner_texts()
            points = [n for n in names if "seed=" in n and "sweep" not in n]
            assert len(points) == 4 and len(set(points)) == 4, names
            assert "linear epochs=60" in names and not any(n == "linear" for n in names)
            colours = page.locator("[data-testid='experiment-view-table-run-color'] input").evaluate_all(
                "els => els.map(e => e.value)")
            assert len(set(colours)) == len(colours), colours  # parent, points, the plain run: all distinct
            page.screenshot(path=str(shots / "ui-runs.png"))

            # A run's metrics page: the curves' section comes before the one-point summaries.
            page.goto(links["quadratic-linear"])
            page.get_by_text("matching run").wait_for()
            href = page.locator("a[href*='/runs/']").first.get_attribute("href")
            page.goto(links["quadratic-linear"].split("#")[0] + href + "/model-metrics?workflowType=machine_learning")
            page.get_by_text("summary").first.wait_for()
            page.get_by_text("Step").first.wait_for()  # the first chart is drawn
            text = page.inner_text("body")
            sections = [s for s in re.findall(r"^(\w+)\n?\s*\(\d+\)$", text, re.M)]
            assert sections[:3] == ["curves", "learned", "summary"], sections
            _close_assistant(page)
            page.screenshot(path=str(shots / "ui-run-metrics.png"))
            browser.close()
    finally:
        _stop_by_pid(proc, store, port)
    assert not _group_alive(store)


def _close_assistant(page):
    """MLflow 3.17 opens an 'Assistant' side panel; close it so the table has the width."""
    close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.first.click()


@pytest.mark.slow
def test_a_runs_svg_charts_show_as_images_in_the_artifacts_tab(invoke, store, tmp_path):
    """The charts every run writes are SVG: MLflow's artifact viewer must draw them as images."""
    chromium, sync_api = _browser()
    shots = Path(os.environ.get("REGFW_UI_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    assert invoke("run", "linear", "--epochs", 5, "--tracking-uri", store, "-q").exit_code == 0
    port = _free_port()
    proc, lines = _start(store, port)
    link = re.match(r"\s+\S+: (\S+)", lines[1]).group(1)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1000, "height": 620})
            page.set_default_timeout(STARTUP_SECONDS * 1000)
            page.goto(link)
            page.get_by_text("matching run").wait_for()
            href = page.locator("a[href*='/runs/']").first.get_attribute("href")
            run_id = href.rsplit("/", 1)[-1]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/get-artifact?path=loss_curve.svg&run_uuid={run_id}",
                                        timeout=30) as response:
                assert response.headers.get_content_type() == "image/svg+xml"
            page.goto(link.split("#")[0] + href + "/artifacts/loss_curve.svg")
            for name in ("loss_curve.svg", "fit.svg"):
                if name != "loss_curve.svg":
                    page.get_by_text(name, exact=True).click()
                image = page.locator(f"img[alt='{name}']")
                image.wait_for()
                drawn = image.evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])")
                assert drawn == [600, 400], (name, drawn)  # a broken SVG decodes to nothing
                if name == "loss_curve.svg":
                    _close_assistant(page)
                    where = page.get_by_text(re.compile(r"^Path: "))  # the test's temporary folder: not for docs
                    page.screenshot(path=str(shots / "artifact-svg.png"), clip={"x": 200, "y": 0, "width": 800,
                                    "height": 600}, mask=[where], mask_color="#ffffff")
            browser.close()
    finally:
        _stop_by_pid(proc, store, port)
    assert not _group_alive(store)
