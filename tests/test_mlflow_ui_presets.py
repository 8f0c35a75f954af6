"""What regfw's UI app presets in the browser for an experiment's runs table and a run's charts
(regfw/mlflow_ui/presets.py), on runs shaped as MLflow's store returns them. The browser test in
test_ui_clickthrough.py checks MLflow's UI reads them."""

from regfw.mlflow_ui import page, presets


def _run(run_id, params, metrics=(), parent=None):
    return {"id": run_id, "params": params, "metrics": dict.fromkeys(metrics, 1.0),
            "tags": {"mlflow.parentRunId": parent} if parent else {}}


def test_the_params_that_vary_are_ticked_seed_last_and_the_sweep_parent_expanded():
    runs = [_run("p", {"optimizer.lr": "0.05,0.1", "epochs": "5"})]
    runs += [_run(f"c{lr}{seed}", {"optimizer.lr": lr, "seed": seed, "epochs": "5", "dataset": "linear-1d"},
                  ["curves/train_loss", "summary/final_train_loss", "summary/final_test_loss",
                   "summary/final_test_accuracy", "learned/weight"], parent="p")
             for lr in ("0.05", "0.1") for seed in ("0", "1")]
    one_point = {"summary/final_train_loss", "summary/final_test_loss", "summary/final_test_accuracy", "learned/weight"}
    state = presets.experiment_state(runs, one_point)
    assert state["selectedColumns"] == ["params.`optimizer.lr`", "params.`seed`",
                                        "metrics.`summary/final_train_loss`", "metrics.`summary/final_test_loss`",
                                        "metrics.`summary/final_test_accuracy`"]
    assert state["runsExpanded"] == {"p": True}
    assert [s["name"] for s in state["compareRunSections"]] == ["curves", "learned", "summary"]
    # One-value metrics as bars in their own section; the curves are left to MLflow to add.
    section = {s["uuid"]: s["name"] for s in state["compareRunSections"]}
    bars = {c["metricKey"]: section[c["metricSectionId"]] for c in state["compareRunCharts"]}
    assert bars == {"learned/weight": "learned", "summary/final_test_accuracy": "summary",
                    "summary/final_test_loss": "summary", "summary/final_train_loss": "summary"}
    assert {c["type"] for c in state["compareRunCharts"]} == {"BAR"}


def test_a_param_only_some_runs_have_varies_and_constants_do_not():
    runs = [_run("a", {"optimizer": "sgd", "x": "1"}), _run("b", {"optimizer": "adam", "optimizer.beta1": "0.9", "x": "1"})]
    assert presets.varying_params(runs) == ["optimizer", "optimizer.beta1"]
    assert presets.varying_params([_run("a", {"x": "1"})]) == []


def test_a_runs_one_point_sections_are_collapsed_and_no_empty_section_is_listed():
    state = presets.run_state({"curves/train_loss": 2, "learned/a": 1, "summary/final_train_loss": 1,
                               "old_plain_metric": 2})
    shown = {s["name"]: s["display"] for s in state["compareRunSections"]}
    assert shown == {"curves": True, "learned": False, "summary": False, "Model metrics": True}
    assert [s["name"] for s in state["compareRunSections"]][-1] == "Model metrics"  # MLflow's order


def test_the_index_page_gets_the_script_first_in_head():
    html = '<!doctype html><html><head><meta charset="utf-8"/><script defer src="main.js"></script></head></html>'
    served = page.with_script(html)
    assert served.index("mlflow.workflowType_v1") < served.index('src="main.js"')
    assert '"machine_learning"' in served and page.PRESET_PATH in served
