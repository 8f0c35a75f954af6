"""What MLflow 3.17's UI should show first, as the browser state it reads at a page's first visit.

MLflow keeps each page's view in the browser's localStorage (read off its built JavaScript):

- an experiment's runs table and charts under
  ``MLflowLocalStorage-1.1-ExperimentPage-["<id>"]-ReactComponentState``: the ticked columns
  (``selectedColumns``, ids such as ``params.`optimizer.lr``` and ``metrics.`summary/final_train_loss```)
  and the chart sections (``compareRunSections``);
- a run's metric charts under ``MLflowLocalStorage-1.1-RunPage-<run id>-model-chartUIState``.

Left empty, MLflow ticks no param and no metric, and draws every one-point metric as its own
single-dot chart beside empty "Model metrics"/"System metrics" sections. The presets here tick the
params that vary across an experiment's runs and its main metrics, list only the chart sections
that have metrics, draw an experiment's one-value metrics as bar charts, and collapse a run's
sections whose metrics hold one point each. MLflow adds the other charts itself (a chart list
is completed from the runs' metrics, into these sections).
"""

from __future__ import annotations

import json
import uuid

from regfw.store.keys import plain

MAX_RUNS = 1000  # an experiment's runs read to find what varies (the newest; enough to decide)
MAX_PARAMS = 8  # varying params ticked; more make the table scroll sideways
MODEL_METRICS = "Model metrics"  # MLflow's section for metrics without a "/" prefix
PARENT_TAG = "mlflow.parentRunId"  # how MLflow nests a sweep's or a study's runs under their parent


def experiment_key(experiment_id: str) -> str:
    return f"MLflowLocalStorage-1.1-ExperimentPage-{json.dumps([str(experiment_id)])}-ReactComponentState"


def run_key(run_id: str) -> str:
    return f"MLflowLocalStorage-1.1-RunPage-{run_id}-model-chartUIState"


def parents(runs: list[dict]) -> set[str]:
    """The runs others are nested under: a sweep's or a `regfw tune` study's parent."""
    return {r["tags"][PARENT_TAG] for r in runs if r["tags"].get(PARENT_TAG)}


def varying_params(runs: list[dict]) -> list[str]:
    """Params whose value differs between runs (a param some runs lack counts as differing);
    parents are left out when there are other runs: their params describe the whole sweep.
    ``seed`` comes last: it is what repeats a setting, not what was compared."""
    nesting = parents(runs)
    points = [r for r in runs if r["id"] not in nesting] or runs
    keys = sorted({k for r in points for k in r["params"]})
    varying = [k for k in keys if len({r["params"].get(k) for r in points}) > 1]
    varying.sort(key=lambda k: (k == "seed", k))
    return varying[:MAX_PARAMS]


def main_metrics(metric_keys: set[str]) -> list[str]:
    """The stored keys of the final train/test loss and every final accuracy, as present."""
    wanted = []
    for name in ("final_train_loss", "final_test_loss"):
        wanted += [k for k in sorted(metric_keys) if plain(k) == name]
    wanted += [k for k in sorted(metric_keys) if plain(k).startswith("final_") and "accuracy" in plain(k)]
    return wanted


def section_name(metric_key: str) -> str:
    """The chart section MLflow files a metric under: the text before its last "/"."""
    head, sep, _ = metric_key.rpartition("/")
    return head if sep and head else MODEL_METRICS


def sections(names: list[str], collapsed: set[str] = frozenset()) -> list[dict]:
    """Chart sections as MLflow stores them, alphabetical as it orders them, unprefixed last."""
    order = sorted(set(names), key=lambda n: (n == MODEL_METRICS, n))
    return [{"uuid": str(uuid.uuid4()), "name": n, "display": n not in collapsed, "isReordered": False,
             "deleted": False} for n in order]


def experiment_state(runs: list[dict], one_point: set[str] = frozenset()) -> dict:
    """An experiment page's first view: the varying params and main metrics ticked, each sweep's
    (or study's) parent expanded into its runs, chart sections only for the metrics its runs have, and a
    bar chart (runs side by side) for each metric in ``one_point``.

    MLflow draws a metric whose value sits at step 1 or later as a line, so a one-value metric
    logged at the last epoch becomes one dot per run at x = epochs; its own bar chart is what a
    value per run needs. The curves are left to MLflow, which adds a line chart for every metric
    the list lacks, in name order, so ``curves/`` comes first."""
    metric_keys = {k for r in runs for k in r["metrics"]}
    columns = [f"params.`{k}`" for k in varying_params(runs)]
    columns += [f"metrics.`{k}`" for k in main_metrics(metric_keys)]
    expanded = {run_id: True for run_id in parents(runs)}
    shown = sections([section_name(k) for k in metric_keys])
    section_id = {s["name"]: s["uuid"] for s in shown}
    bars = [{"type": "BAR", "uuid": str(uuid.uuid4()), "runsCountToCompare": 20,
             "metricSectionId": section_id[section_name(k)], "deleted": False,
             "isGenerated": False,  # a generated bar is turned back into a line by MLflow
             "metricKey": k, "displayName": k.rpartition("/")[2]}
            for k in sorted(metric_keys & set(one_point))]
    return {"selectedColumns": columns, "runsExpanded": expanded, "compareRunCharts": bars,
            "compareRunSections": shown, "isAccordionReordered": False}


def run_state(metric_points: dict[str, int]) -> dict:
    """A run's metrics tab: curves open, a section whose metrics hold one point each (summaries,
    learned values logged once) collapsed, so no single-dot chart comes before the curves."""
    by_section: dict[str, list[int]] = {}
    for key, points in metric_points.items():
        by_section.setdefault(section_name(key), []).append(points)
    collapsed = {name for name, counts in by_section.items() if max(counts) <= 1}
    return {"isAccordionReordered": False, "compareRunCharts": [],
            "compareRunSections": sections(list(by_section), collapsed), "autoRefreshEnabled": True,
            "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""}}


# -- read from MLflow's tracking store (inside the server) ----------------------------------------
def _as_dict(run) -> dict:
    return {"id": run.info.run_id, "params": dict(run.data.params), "metrics": dict(run.data.metrics), "tags": dict(run.data.tags)}


def experiment_preset(store, experiment_id: str) -> dict:
    from mlflow.entities import ViewType

    runs = [_as_dict(r) for r in store.search_runs([experiment_id], "", ViewType.ACTIVE_ONLY, max_results=MAX_RUNS)]
    one_point = set()
    for key in {k for r in runs for k in r["metrics"]}:
        # Two points tell a curve from a single value; one run that has the metric decides.
        holder = next(r["id"] for r in runs if key in r["metrics"])
        if len(store.get_metric_history(holder, key, max_results=2)) <= 1:
            one_point.add(key)
    state = experiment_state(runs, one_point)
    # The one field regfw keeps current while the user has not changed it (see page.py).
    return {"key": experiment_key(experiment_id), "value": state, "managed": "selectedColumns"}


def run_preset(store, run_id: str) -> dict:
    run = store.get_run(run_id)
    points = {}
    for key in run.data.metrics:
        # Two points tell a curve from a single value; a section mixing both stays open.
        points[key] = len(store.get_metric_history(run_id, key, max_results=2))
    return {"key": run_key(run_id), "value": run_state(points), "managed": None}
