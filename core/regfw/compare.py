"""Reading runs back from the store: the runs table, seed aggregation, side-by-side comparison
and overlaid curves. Everything goes through ``MlflowClient`` (``search_runs``,
``get_metric_history``), so it works on any MLflow store, local or remote."""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from regfw.errors import RegfwError, did_you_mean

CURVES = ("train_loss", "test_loss")
ACCURACY_CURVES = ("train_accuracy", "test_accuracy")
SPECIAL_SORT_KEYS = ("name", "status", "duration", "start")
PAGE = 1000


@dataclass
class RunRow:
    run_id: str
    name: str
    status: str
    experiment: str
    start_time: int | None
    end_time: int | None
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return max(0.0, (self.end_time - self.start_time) / 1000.0)

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "name": self.name, "status": self.status, "experiment": self.experiment,
                "start_time": self.start_time, "duration_s": self.duration, "params": self.params,
                "metrics": self.metrics, "sweep_id": self.tags.get("regfw.sweep_id"),
                "parent_run_id": self.tags.get("mlflow.parentRunId")}


# -- store ------------------------------------------------------------------------------------
def open_client(uri: str):
    """An MlflowClient on an existing store; reading never creates an empty database."""
    from regfw.tracking import _check_reachable, _store_error, quiet_libraries

    quiet_libraries()
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if str(path) not in ("", ":memory:") and not path.exists():
            raise RegfwError(f"no run store at {path}; run something first (e.g. `regfw run linear`) "
                             "or pass --tracking-uri")
    else:
        _check_reachable(uri)
    from mlflow import MlflowClient

    quiet_libraries()
    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001
        raise _store_error(uri, exc) from None
    return client


def _experiments(client, name: str | None, uri: str) -> dict[str, str]:
    """``{experiment_id: name}`` for ``name``, or every active experiment."""
    if name is not None:
        found = client.get_experiment_by_name(name)
        if found is None or found.lifecycle_stage == "deleted":
            names = [e.name for e in client.search_experiments()]
            raise RegfwError(f"no MLflow experiment '{name}' in {uri}{did_you_mean(name, names)}")
        return {found.experiment_id: found.name}
    return {e.experiment_id: e.name for e in client.search_experiments()}


def _mlflow_error(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return " ".join(str(text).split())[:200]


def search(client, uri: str, experiment: str | None = None, *, filter_string: str = "",
           sweep: str | None = None, max_results: int | None = None, include_parents: bool = False) -> list[RunRow]:
    """Runs of ``experiment`` (or all experiments), newest first, sweep parents left out."""
    from mlflow.exceptions import MlflowException

    from regfw.sweep import SWEEP_ID_TAG, SWEEP_ROLE_TAG

    experiments = _experiments(client, experiment, uri)
    if not experiments:
        return []
    clauses = [c for c in (filter_string.strip(),) if c]
    if sweep:
        if "'" in sweep:
            raise RegfwError(f"--sweep expects a sweep id, got {sweep!r}")
        clauses.append(f"tags.`{SWEEP_ID_TAG}` = '{sweep}'")
    query = " and ".join(clauses)  # MLflow's search syntax has AND only, no OR and no parentheses
    rows: list[RunRow] = []
    token = None
    while True:
        want = PAGE if max_results is None else min(PAGE, max_results - len(rows) + 1)
        try:
            page = client.search_runs(list(experiments), filter_string=query, max_results=want,
                                      order_by=["attributes.start_time DESC"], page_token=token)
        except MlflowException as exc:
            if filter_string:
                raise RegfwError(f"bad --filter {filter_string!r}: {_mlflow_error(exc)}") from None
            raise RegfwError(f"cannot search runs in {uri}: {_mlflow_error(exc)}") from None
        for run in page:
            if not include_parents and run.data.tags.get(SWEEP_ROLE_TAG) == "sweep":
                continue
            rows.append(_row(run, experiments))
        token = page.token
        if not token or (max_results is not None and len(rows) >= max_results):
            break
    return rows[:max_results] if max_results is not None else rows


def _row(run, experiments: dict) -> RunRow:
    info = run.info
    return RunRow(info.run_id, info.run_name or "", info.status, experiments.get(info.experiment_id, info.experiment_id),
                  info.start_time, info.end_time, dict(run.data.params),
                  {k: _unclamp(v) for k, v in run.data.metrics.items()}, dict(run.data.tags))


def _unclamp(value: float) -> float:
    """MLflow stores an infinite metric as +-sys.float_info.max; show it as the inf it was."""
    if isinstance(value, float) and abs(value) >= sys.float_info.max:
        return math.copysign(math.inf, value)
    return value


def get_runs(client, uri: str, ids: list[str]) -> list[RunRow]:
    """Runs by id or by a unique id prefix (as `regfw runs` shows them)."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    out, everything = [], None
    experiments = {e.experiment_id: e.name for e in client.search_experiments(view_type=ViewType.ALL)}
    for given in ids:
        ident = given.strip()
        if not ident or not all(c in "0123456789abcdefABCDEF" for c in ident):
            raise RegfwError(f"'{given}' is not a run id (32 hex digits, or a unique prefix as `regfw runs` shows)")
        run = None
        if len(ident) == 32:
            try:
                run = client.get_run(ident.lower())
            except MlflowException:
                run = None
        if run is None:
            if everything is None:
                everything = []
                for exp_id in experiments:
                    token = None
                    while True:
                        page = client.search_runs([exp_id], run_view_type=ViewType.ALL, max_results=PAGE,
                                                  page_token=token)
                        everything.extend(page)
                        token = page.token
                        if not token:
                            break
            matches = [r for r in everything if r.info.run_id.startswith(ident.lower())]
            if not matches:
                raise RegfwError(f"no run '{given}' in {uri}")
            if len(matches) > 1:
                raise RegfwError(f"run id prefix '{given}' matches {len(matches)} runs; give more digits")
            run = matches[0]
        out.append(_row(run, experiments))
    return out


# -- what to show ------------------------------------------------------------------------------
def differing_params(rows: list[RunRow]) -> list[str]:
    """Param keys whose value is not the same in every row (missing counts as a value)."""
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row.params if k not in keys)
    return [k for k in keys if len({row.params.get(k) for row in rows}) > 1]


def _metric_order(name: str) -> tuple:
    base = name.split("_", 1)[1] if name.startswith(("final_", "best_")) else name
    kind = 0 if name.startswith("final_") else 1
    rank = {"train_loss": 0, "test_loss": 1, "train_accuracy": 2, "test_accuracy": 3}.get(base, 4)
    return (rank, base, kind)


def summary_metrics(rows: list[RunRow]) -> list[str]:
    """``final_*`` and ``best_*`` metrics present in any row, losses first."""
    names = {m for row in rows for m in row.metrics if m.startswith(("final_", "best_"))}
    return sorted(names, key=_metric_order)


def compare_metrics(rows: list[RunRow]) -> list[str]:
    """Every metric but the raw per-epoch curves (their last values are the final_* ones)."""
    names = {m for row in rows for m in row.metrics}
    shown = [m for m in names if f"final_{m}" not in names]
    return sorted(shown, key=lambda m: (m.startswith("learned."), _metric_order(m)))


def all_metric_names(rows: list[RunRow]) -> list[str]:
    return sorted({m for row in rows for m in row.metrics})


def check_metrics(rows: list[RunRow], wanted: list[str]) -> list[str]:
    present = all_metric_names(rows)
    for name in wanted:
        if rows and name not in present:
            raise RegfwError(f"no listed run has metric '{name}'{did_you_mean(name, present)}")
    return list(wanted)


# -- sorting and grouping ----------------------------------------------------------------------
def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def value_sort_key(value) -> tuple:
    """Numbers in numeric order before text; missing last."""
    if value is None:
        return (2, 0.0, "")
    number = _number(value)
    if number is not None and not math.isnan(number):
        return (0, number, "")
    return (1, 0.0, str(value))


def parse_sort(key: str | None) -> tuple[str | None, bool]:
    if not key:
        return None, False
    key = key.strip()
    if key.startswith("-"):
        return key[1:], True
    return key, False


def sort_rows(rows: list[RunRow], key: str | None) -> list[RunRow]:
    name, descending = parse_sort(key)
    if name is None:
        return rows
    params = {k for row in rows for k in row.params}
    metrics = set(all_metric_names(rows))
    if name in metrics:
        get = lambda r: r.metrics.get(name)  # noqa: E731
    elif name in params:
        get = lambda r: r.params.get(name)  # noqa: E731
    elif name == "name":
        get = lambda r: r.name  # noqa: E731
    elif name == "status":
        get = lambda r: r.status  # noqa: E731
    elif name == "duration":
        get = lambda r: r.duration  # noqa: E731
    elif name == "start":
        get = lambda r: r.start_time  # noqa: E731
    else:
        if not rows:
            return rows
        raise RegfwError(f"cannot sort by '{name}': no listed run has a metric or param of that name"
                         + _suggest(name, sorted(metrics | params) + list(SPECIAL_SORT_KEYS), sorted(metrics)))
    return _sorted(rows, get, descending)


def _sorted(items, get, descending: bool):
    present = [i for i in items if get(i) is not None and not _is_nan(get(i))]
    missing = [i for i in items if i not in present]
    present.sort(key=lambda i: value_sort_key(get(i)), reverse=descending)
    return present + missing  # runs without the value go last either way


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


@dataclass
class Group:
    values: dict  # group param -> value (None: the run has no such param)
    rows: list
    stats: dict = field(default_factory=dict)  # metric -> (mean, std | None, n)

    def statuses(self) -> dict:
        out: dict = {}
        for row in self.rows:
            out[row.status] = out.get(row.status, 0) + 1
        return out

    def to_json(self, over: list[str]) -> dict:
        return {"group": self.values, "runs": len(self.rows), "statuses": self.statuses(), "over": over,
                "run_ids": [r.run_id for r in self.rows],
                "metrics": {m: {"mean": mean, "std": std, "n": n} for m, (mean, std, n) in self.stats.items()}}


def aggregate(values: list[float]) -> tuple[float, float | None, int]:
    """Mean, sample standard deviation (n-1; None for a single value) and count. A diverged
    run's inf or nan makes the mean inf or nan and the spread nan: shown, not hidden."""
    n = len(values)
    if not all(math.isfinite(v) for v in values):
        mean = sum(values) / n
        return mean, (math.nan if n > 1 else None), n
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else None
    return mean, std, n


def json_safe(value):
    """JSON has no inf or nan: write them as the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def group_rows(rows: list[RunRow], by: list[str], metrics: list[str]) -> tuple[list[Group], list[str]]:
    """Groups of rows with equal values of ``by``, each metric's mean ± std; and the params
    that vary inside the groups (what was averaged over, typically the seed)."""
    params = {k for row in rows for k in row.params}
    for key in by:
        if rows and key not in params:
            raise RegfwError(f"no listed run has param '{key}'{did_you_mean(key, sorted(params))}")
    groups: dict[tuple, Group] = {}
    for row in rows:
        values = tuple(row.params.get(k) for k in by)
        groups.setdefault(values, Group(dict(zip(by, values)), [])).rows.append(row)
    over = []
    for group in groups.values():
        for key in differing_params(group.rows):
            if key not in over:
                over.append(key)
        for metric in metrics:
            found = [row.metrics[metric] for row in group.rows if metric in row.metrics]
            if found:
                group.stats[metric] = aggregate(found)
    ordered = sorted(groups.values(), key=lambda g: tuple(value_sort_key(g.values[k]) for k in by))
    return ordered, over


def sort_groups(groups: list[Group], key: str | None, by: list[str]) -> list[Group]:
    name, descending = parse_sort(key)
    if name is None:
        return groups
    if name in by:
        return _sorted(groups, lambda g: g.values.get(name), descending)
    metrics = {m for g in groups for m in g.stats}
    if name in metrics:
        return _sorted(groups, lambda g: g.stats[name][0] if name in g.stats else None, descending)
    if name == "count":
        return _sorted(groups, lambda g: len(g.rows), descending)
    if not groups:
        return groups
    choices = sorted(metrics) + list(by) + ["count"]
    raise RegfwError(f"cannot sort groups by '{name}'" + _suggest(name, choices, choices))


def _suggest(name: str, candidates: list[str], listed: list[str]) -> str:
    """`` (did you mean 'x'?)``, else a short list of what there is (metric names, not every param)."""
    hint = did_you_mean(name, candidates)
    if hint.startswith(" (did"):
        return hint
    return "; metrics: " + ", ".join(listed) if listed else ""


# -- text -------------------------------------------------------------------------------------
def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def fmt_mean_std(stat) -> str:
    if stat is None:
        return "-"
    mean, std, _ = stat
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std) if not math.isfinite(std) else f'{std:.2g}'}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """Plain aligned columns; the columns in ``right`` are right-aligned (numbers)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells):
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def short_id(run_id: str) -> str:
    return run_id[:8]


# -- plots ------------------------------------------------------------------------------------
def histories(client, rows: list[RunRow], names) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{run_id: {metric: [(step, value), ...]}}`` from ``get_metric_history``."""
    out = {}
    for row in rows:
        curves = {}
        for name in names:
            if name in row.metrics:
                points = client.get_metric_history(row.run_id, name)
                curves[name] = sorted((m.step, _unclamp(m.value)) for m in points)
        out[row.run_id] = curves
    return out


def labels(rows: list[RunRow]) -> dict[str, str]:
    """A legend label per run: the params that differ (short keys), else the run name."""
    keys = [k for k in differing_params(rows) if k != "device"]
    out = {}
    for row in rows:
        parts = [f"{k.rsplit('.', 1)[-1]}={row.params.get(k, '-')}" for k in keys]
        out[row.run_id] = " ".join(parts) or row.name or short_id(row.run_id)
    if len(set(out.values())) < len(out):
        out = {rid: f"{text} ({short_id(rid)})" for rid, text in out.items()}
    return out


def plot_overlay(client, rows: list[RunRow], path: str | Path) -> list[str]:
    """Loss curves of every run in one panel (train solid, test dashed); accuracy in a second
    panel when any run has it. Returns the panels drawn."""
    from regfw.plots import _pyplot

    path = Path(path)
    if not path.parent.exists():
        raise RegfwError(f"cannot write {path}: folder {path.parent} does not exist")
    data = histories(client, rows, CURVES + ACCURACY_CURVES)
    panels = [("loss", CURVES)]
    if any(data[r.run_id].get(n) for r in rows for n in ACCURACY_CURVES):
        panels.append(("accuracy", ACCURACY_CURVES))
    if not any(data[r.run_id].get(n) for r in rows for n in CURVES):
        raise RegfwError("none of these runs has a loss curve to plot")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    names = labels(rows)
    for ax, (panel, metrics) in zip(axes[0], panels):
        positive = True
        for i, row in enumerate(rows):
            for metric, style in zip(metrics, ("-", "--")):
                points = data[row.run_id].get(metric)
                if not points:
                    continue
                steps, values = zip(*points)
                positive = positive and all(v > 0 for v in values if math.isfinite(v))
                split = metric.split("_", 1)[0]
                ax.plot(steps, values, style, color=colors[i % len(colors)], label=f"{names[row.run_id]} ({split})")
        if panel == "loss" and positive:
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=panel, title=f"{panel}: {len(rows)} runs")
        ax.legend(fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except (OSError, ValueError) as exc:
        raise RegfwError(f"cannot write {path}: {' '.join(str(exc).split())[:160]}") from None
    finally:
        plt.close(fig)
    return [panel for panel, _ in panels]


def json_safe_dumps(value) -> str:
    return json.dumps(json_safe(value), indent=2, allow_nan=False)
