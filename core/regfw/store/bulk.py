"""Metric rows written into a SQLite MLflow store with one statement per table, not one ORM object each.

Why: ``MlflowClient.log_batch`` builds a SQLAlchemy object per metric and costs about 0.3 ms a
metric on SQLite; a sweep of 32 points with 1000 log points each spent ~10 s there, more than the
stacked training itself (issue 11). This writes the same rows into the same tables, through the
store's own engine and MLflow's own table definitions (``SqlMetric``, ``SqlLatestMetric``):
every metric row (``INSERT OR IGNORE``: a row already there is kept, as MLflow's own de-duplication
does), and the latest value per key, replaced only by a strictly later one by (step, timestamp,
value) - MLflow's rule. NaN is stored as MLflow stores it (``is_nan``, value 0) and ±inf as
±float64 max. One transaction: a batch is written whole or not at all.

Used only when the store is an MLflow ``SqlAlchemyStore`` on SQLite; any other store (a tracking
server, PostgreSQL, ...) keeps ``log_batch``. tests/test_bulk_metrics.py reads rows written both
ways back through MLflow's API and requires them equal, so a schema change in a new MLflow fails
there rather than in a user's store.
"""

from __future__ import annotations

import math

FLOAT64_MAX = 1.7976931348623157e308


def sqlite_engine(client):
    """The SQLAlchemy engine behind ``client`` when its store is an MLflow SQL store on SQLite,
    else None. (MlflowClient keeps its store on ``_tracking_client``; the bulk test fails if that
    ever moves, and then every write simply goes through ``log_batch``.)"""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    engine = getattr(store, "engine", None)
    if engine is None or getattr(engine.dialect, "name", None) != "sqlite":
        return None
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    return engine if isinstance(store, SqlAlchemyStore) else None


def _stored_value(value: float) -> tuple[float, bool]:
    if math.isnan(value):
        return 0.0, True
    if math.isinf(value):
        return (FLOAT64_MAX if value > 0 else -FLOAT64_MAX), False
    return value, False


def write_metrics(engine, batches: dict) -> None:
    """``batches``: ``{run_id: [(key, value, step, timestamp_ms), ...]}``, written in one transaction."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
    from sqlalchemy import insert, tuple_
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    rows, latest = [], {}
    for run_id, metrics in batches.items():
        for key, value, step, timestamp in metrics:
            value, is_nan = _stored_value(float(value))
            row = {"run_uuid": run_id, "key": key, "value": value, "timestamp": int(timestamp),
                   "step": int(step), "is_nan": is_nan}
            rows.append(row)
            best = latest.get((run_id, key))
            if best is None or (row["step"], row["timestamp"], value) > (best["step"], best["timestamp"], best["value"]):
                latest[(run_id, key)] = row
    if not rows:
        return
    metrics_table, latest_table = SqlMetric.__table__, SqlLatestMetric.__table__
    upsert = sqlite_insert(latest_table)
    excluded = upsert.excluded
    upsert = upsert.on_conflict_do_update(
        index_elements=[latest_table.c.key, latest_table.c.run_uuid],
        set_={name: excluded[name] for name in ("value", "timestamp", "step", "is_nan")},
        where=tuple_(excluded.step, excluded.timestamp, excluded.value)
        > tuple_(latest_table.c.step, latest_table.c.timestamp, latest_table.c.value))
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA busy_timeout = 20000")  # as MLflow's own sessions wait for a writer
        connection.execute(insert(metrics_table).prefix_with("OR IGNORE"), rows)
        connection.execute(upsert, list(latest.values()))
