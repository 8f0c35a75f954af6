"""What to show of a set of runs: the params that differ, which metrics, sorting, and grouping
with mean ± std over what varies inside a group (typically the seed)."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field

from regfw.errors import RegfwError, did_you_mean
from regfw.runs.queries import RunRow

SPECIAL_SORT_KEYS = ("name", "status", "duration", "start")


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


def labels(rows: list[RunRow]) -> dict[str, str]:
    """A legend label per run: the params that differ (short keys), else the run name."""
    keys = [k for k in differing_params(rows) if k != "device"]
    out = {}
    for row in rows:
        parts = [f"{k.rsplit('.', 1)[-1]}={row.params.get(k, '-')}" for k in keys]
        out[row.run_id] = " ".join(parts) or row.name or _short(row.run_id)
    if len(set(out.values())) < len(out):
        out = {rid: f"{text} ({_short(rid)})" for rid, text in out.items()}
    return out


def _short(run_id: str) -> str:
    return run_id[:8]


def json_safe_dumps(value) -> str:
    return json.dumps(json_safe(value), indent=2, allow_nan=False)
