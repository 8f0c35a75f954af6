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

import functools
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
    rows, latest = [], {}
    for run_id, metrics in batches.items():
        for key, value, step, timestamp in metrics:
            value, is_nan = _stored_value(float(value))
            row = (key, value, int(timestamp), int(step), is_nan, run_id)
            rows.append(row)
            best = latest.get((run_id, key))
            if best is None or (row[3], row[2], value) > (best[3], best[2], best[1]):
                latest[(run_id, key)] = row
    if not rows:
        return
    insert, upsert = _statements()
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA busy_timeout = 20000")  # as MLflow's own sessions wait for a writer
        # The driver's executemany with plain tuples: SQLAlchemy's per-row parameter handling
        # cost ~10 us a row, as much as SQLite's insert itself.
        connection.exec_driver_sql(insert, rows)
        connection.exec_driver_sql(upsert, list(latest.values()))


COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")


@functools.cache  # the same two statements for every flush of the process
def _statements() -> tuple[str, str]:
    """The two statements, with table and column names from MLflow's own table definitions."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric

    metrics, latest = SqlMetric.__table__, SqlLatestMetric.__table__
    for table in (metrics, latest):
        missing = [c for c in COLUMNS if c not in table.c]
        if missing:
            raise RuntimeError(f"MLflow's {table.name} table has no column {missing[0]}")
    names = ", ".join(COLUMNS)
    marks = ", ".join("?" * len(COLUMNS))
    changed = ("value", "timestamp", "step", "is_nan")
    insert = f"INSERT OR IGNORE INTO {metrics.name} ({names}) VALUES ({marks})"
    upsert = (f"INSERT INTO {latest.name} ({names}) VALUES ({marks}) ON CONFLICT (key, run_uuid) DO UPDATE SET "
              + ", ".join(f"{c} = excluded.{c}" for c in changed)
              + f" WHERE (excluded.step, excluded.timestamp, excluded.value) > "
                f"({latest.name}.step, {latest.name}.timestamp, {latest.name}.value)")
    return insert, upsert
