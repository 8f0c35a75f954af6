"""Reading runs back from any MLflow store, local or remote: the runs of an experiment (or a
sweep), runs by id or unique prefix, and metric histories. Clients come from :mod:`regfw.store`."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

from regfw.errors import RegfwError, did_you_mean, squeeze
from regfw.store import keys, tags as T

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
                "metrics": self.metrics, "sweep_id": self.tags.get(T.SWEEP_ID),
                "parent_run_id": self.tags.get(T.PARENT)}


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
    return squeeze(str(text))


def search(client, uri: str, experiment: str | None = None, *, filter_string: str = "",
           sweep: str | None = None, max_results: int | None = None, include_parents: bool = False,
           study: str | None = None) -> list[RunRow]:
    """Runs of ``experiment`` (or all experiments), newest first, sweep and study parents left out."""
    from mlflow.exceptions import MlflowException

    experiments = _experiments(client, experiment, uri)
    if not experiments:
        return []
    clauses = [c for c in (keys.filter_string(filter_string.strip()),) if c]
    if sweep:
        if "'" in sweep:
            raise RegfwError(f"--sweep expects a sweep id, got {sweep!r}")
        clauses.append(f"tags.`{T.SWEEP_ID}` = '{sweep}'")
    if study:
        if "'" in study:
            raise RegfwError(f"--study expects a study name, got {study!r}")
        clauses.append(f"tags.`{T.STUDY}` = '{study}'")
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
            if not include_parents and run.data.tags.get(T.ROLE) in (T.ROLE_SWEEP, T.ROLE_STUDY):
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
                  {keys.plain(k): unclamp(v) for k, v in run.data.metrics.items()}, dict(run.data.tags))


def unclamp(value: float) -> float:
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


def histories(client, rows: list[RunRow], names) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{run_id: {metric: [(step, value), ...]}}`` from ``get_metric_history``."""
    out = {}
    for row in rows:
        curves = {}
        for name in names:
            if name in row.metrics:
                # Runs written before metrics had chart sections keep the plain name.
                points = client.get_metric_history(row.run_id, keys.stored(name)) or \
                    client.get_metric_history(row.run_id, name)
                curves[name] = sorted((m.step, unclamp(m.value)) for m in points)
        out[row.run_id] = curves
    return out


def full_run_id(uri: str, given: str) -> str:
    """The run's full id from an id or a unique prefix, as `compare` takes them; anything that is
    not hex digits is refused as no run id before the store is asked about it."""
    from regfw.store import open_client, store_error

    client = open_client(uri)
    try:
        return get_runs(client, uri, [given])[0].run_id
    except RegfwError:
        raise
    except Exception as exc:  # noqa: BLE001 - a store that cannot be read is one line
        raise store_error(uri, exc) from None
