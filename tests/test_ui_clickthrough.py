"""The MLflow UI as a newcomer clicks through it, from the link `regfw ui` prints, in a browser that
has never visited it (issue 26): every page in Model-training mode, no Assistant panel, the runs
table showing what was compared, no single-dot chart before a run's curves.

Headless Debian ``chromium`` driven by playwright over a real store and a real `regfw ui`, started
and stopped by its own pid. ``REGFW_UI_SHOTS=DIR`` keeps the screenshots (docs/img/ui-*.png;
``make ui-screenshots``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from test_ui import STARTUP_SECONDS, _browser, _free_port, _group_alive, _start, _stop_by_pid

VIEW = {"width": 1440, "height": 900}
GENAI_ONLY = ("Judges", "Detect Issues", "Agent versions", "Sessions")  # GenAI mode's sidebar and overview


def _model_training(page, experiment_page=True):
    """Model-training mode: none of GenAI's pages in the sidebar; an experiment's own sidebar lists
    its runs and models. MLflow read the mode from regfw's script, not from the address."""
    body = page.inner_text("body")
    assert not [word for word in GENAI_ONLY if word in body], (page.url, body[:400])
    if experiment_page:
        nav = page.locator("aside").first.inner_text()
        assert "Runs" in nav.split() and "Models" in nav.split(), (page.url, nav)
    assert json.loads(page.evaluate("localStorage.getItem('mlflow.workflowType_v1')")) == "machine_learning"


def _no_assistant(page):
    """The Assistant side panel is closed (its round button stays, bottom right)."""
    assert page.locator("[data-component-id='mlflow.assistant.chat_panel.close']").count() == 0, page.url
    body = page.inner_text("body")
    assert not [t for t in ("Welcome to MLflow Assistant", "Assistant setup required") if t in body], page.url


def _columns(page) -> str:
    return " ".join(page.locator("[role=columnheader]").all_inner_texts())


def _runs_table(page, param: str, children: list[str]):
    """The runs table with the varying param and a loss column ticked, the sweep's points listed
    by distinct names, all without touching Columns."""
    page.get_by_text("matching run").first.wait_for()
    for name in children:
        page.get_by_text(name, exact=True).first.wait_for()
    columns = _columns(page)
    assert param in columns and re.search(r"summary/final_", columns), columns
    names = page.locator("a[href*='/runs/'] span").all_inner_texts()
    shown = [n for n in names if n in children]
    assert sorted(shown) == sorted(children) and len(set(shown)) == len(shown), names


def _charts_above_the_fold(page) -> list[str]:
    cards = page.get_by_test_id("experiment-view-compare-runs-card")
    titles = []
    for i in range(cards.count()):
        box = cards.nth(i).bounding_box()
        if box and box["y"] < VIEW["height"] and cards.nth(i).is_visible():
            titles.append(cards.nth(i).locator("h4").first.inner_text())
    return titles


@pytest.mark.slow
def test_every_page_clicked_from_regfw_ui_opens_in_model_training_with_the_runs_compared(invoke, store, tmp_path):
    chromium, sync_api = _browser()
    shots = Path(os.environ.get("REGFW_UI_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    for args in (["run", "linear", "--epochs", 30],
                 ["sweep", "linear", "--set", "optimizer.lr=0.05,0.1", "--seeds", "0,1", "--epochs", 30],
                 ["sweep", "quadratic-linear", "--seeds", "0,1,2", "--vectorize", "--epochs", 30]):
        assert invoke(*args, "--tracking-uri", store, "-q").exit_code == 0, args
    import mlflow

    client = mlflow.MlflowClient(store)
    linear = client.get_experiment_by_name("linear").experiment_id
    curves_of = {}  # a run's metrics with more than one point: the only charts worth the first screen

    def curves(run_id):
        if run_id not in curves_of:
            keys = client.get_run(run_id).data.metrics
            curves_of[run_id] = {k.rpartition("/")[2] for k in keys if len(client.get_metric_history(run_id, k)) > 1}
        return curves_of[run_id]

    port = _free_port()
    proc, lines = _start(store, port, experiments=2)
    listing = re.search(r"(http://\S+)", lines[0]).group(1)
    base = listing.split("#")[0].rstrip("/")
    linear_children = ["lr=0.05 seed=0", "lr=0.05 seed=1", "lr=0.1 seed=0", "lr=0.1 seed=1"]
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_context(viewport=VIEW).new_page()  # a fresh profile: nothing stored
            page.set_default_timeout(STARTUP_SECONDS * 1000)

            # The printed link: the experiments list. One click on an experiment: its runs table.
            page.goto(listing)
            page.get_by_role("link", name="linear", exact=True).first.wait_for()
            _model_training(page, experiment_page=False)
            _no_assistant(page)
            page.screenshot(path=str(shots / "ui-experiments.png"))
            page.get_by_role("link", name="linear", exact=True).first.click()
            _runs_table(page, "optimizer.lr", linear_children)
            _model_training(page)
            _no_assistant(page)
            page.screenshot(path=str(shots / "ui-sweep.png"))

            # The sweep's parent, then back and one of its points, then the run's metrics tab.
            page.get_by_role("link", name=re.compile(r"^linear sweep ")).first.click()
            page.get_by_role("tab", name=re.compile("Model metrics")).wait_for()
            _model_training(page)
            _no_assistant(page)
            page.screenshot(path=str(shots / "ui-sweep-parent.png"))
            page.get_by_test_id("experiment-runs-link").click()  # the breadcrumb: no ?workflowType
            _runs_table(page, "optimizer.lr", linear_children)
            _model_training(page)

            page.get_by_role("link", name="lr=0.1 seed=1", exact=True).click()
            run_id = page.url.split("/runs/")[1].split("/")[0].split("?")[0]
            page.get_by_role("tab", name=re.compile("Model metrics")).click()
            page.get_by_text("Step").first.wait_for()  # the first curve is drawn
            _model_training(page)
            _no_assistant(page)
            above = _charts_above_the_fold(page)
            assert above and set(above) <= curves(run_id), (above, curves(run_id))
            page.screenshot(path=str(shots / "ui-point-metrics.png"))

            # The plain run, from the breadcrumb's runs table; its metrics tab too.
            page.get_by_test_id("experiment-runs-link").click()
            page.get_by_role("link", name=re.compile(r"^linear epochs=30")).click()
            plain_id = page.url.split("/runs/")[1].split("/")[0].split("?")[0]
            page.get_by_text("Parameters").first.wait_for()
            _model_training(page)
            _no_assistant(page)
            page.get_by_role("tab", name=re.compile("Model metrics")).click()
            page.get_by_text("Step").first.wait_for()
            above = _charts_above_the_fold(page)
            assert above and set(above) <= curves(plain_id), (above, curves(plain_id))

            # The compare page of three of the sweep's points.
            page.get_by_test_id("experiment-runs-link").click()
            _runs_table(page, "optimizer.lr", linear_children)
            for name in linear_children[:3]:
                page.locator(f".ag-row:has-text('{name}') .ag-selection-checkbox input").click()
            page.get_by_role("button", name=re.compile("^Compare")).click()
            page.get_by_text("Comparing 3 Runs").wait_for()
            page.get_by_text("Run details").wait_for()
            _model_training(page)
            _no_assistant(page)
            assert all(page.get_by_text(n, exact=True).count() for n in linear_children[:3])
            page.screenshot(path=str(shots / "ui-compare.png"))

            # The vectorized sweep: its points by seed only, the table and charts view preset.
            page.goto(listing)
            page.get_by_role("link", name="quadratic-linear", exact=True).first.click()
            _runs_table(page, "seed", ["seed=0", "seed=1", "seed=2"])
            _model_training(page)
            page.screenshot(path=str(shots / "ui-vectorized.png"))
            page.locator("[data-component-id$='experimentviewrunscontrolsfilters.tsx_184'] label").nth(1).click()
            page.get_by_text("Step").first.wait_for()
            sections = page.get_by_test_id("experiment-view-compare-runs-section-header").all_inner_texts()
            assert sections and sections[0].startswith("curves") and not any("(0)" in s for s in sections), sections
            page.screenshot(path=str(shots / "ui-charts.png"))

            # The bare experiment link people paste, in another browser that has never seen the UI.
            bare = browser.new_context(viewport=VIEW).new_page()
            bare.set_default_timeout(STARTUP_SECONDS * 1000)
            bare.goto(f"{base}/#/experiments/{linear}")
            _runs_table(bare, "optimizer.lr", linear_children)
            _model_training(bare)
            _no_assistant(bare)
            browser.close()
    finally:
        _stop_by_pid(proc, store, port)
    assert not _group_alive(store)
