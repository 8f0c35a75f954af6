"""Metric rows written into a SQLite MLflow store with one statement per table, not one ORM object each.

Why: ``MlflowClient.log_batch`` builds a SQLAlchemy object per metric and costs about 0.3 ms a
metric on SQLite; a sweep of 32 points with 1000 log points each spent ~10 s there, more than the
stacked training itself (issue 11). This writes the same rows into the same tables (``metrics``,
``latest_metrics``) through the connection of a :class:`regfw.store.direct.DirectStore`: every
metric row (``INSERT OR IGNORE``: a row already there is kept, as MLflow's own de-duplication
does), and the latest value per key, replaced only by a strictly later one by (step, timestamp,
value) - MLflow's rule. NaN is stored as MLflow stores it (``is_nan``, value 0) and ±inf as
±float64 max. One transaction: a batch is written whole or not at all.

Used only where ``DirectStore`` is (an existing SQLite store of the installed MLflow's schema);
any other store keeps ``log_batch``. tests/test_bulk_metrics.py reads rows written both ways back
through MLflow's API and requires them equal, so a schema change in a new MLflow fails there
rather than in a user's store.
"""

from __future__ import annotations

import functools
import math

from regfw.store.direct import check_run_active

FLOAT64_MAX = 1.7976931348623157e308


def _stored_value(value: float) -> tuple[float, bool]:
    if math.isnan(value):
        return 0.0, True
    if math.isinf(value):
        return (FLOAT64_MAX if value > 0 else -FLOAT64_MAX), False
    return value, False


def write_metrics(store, batches: dict) -> None:
    """``batches``: ``{run_id: [(key, value, step, timestamp_ms), ...]}``, written into ``store``
    (a :class:`~regfw.store.direct.DirectStore`) in one transaction."""
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
    # The driver's executemany with plain tuples, one transaction for both tables, after MLflow's
    # check that each run is still active (deleted or gc'd meanwhile: RunGone, nothing written).
    with store.transaction() as db:
        for run_id in batches:
            check_run_active(db, run_id)
        db.executemany(insert, rows)
        db.executemany(upsert, list(latest.values()))


COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")


@functools.cache  # the same two statements for every flush of the process
def _statements() -> tuple[str, str]:
    names = ", ".join(COLUMNS)
    marks = ", ".join("?" * len(COLUMNS))
    changed = ("value", "timestamp", "step", "is_nan")
    insert = f"INSERT OR IGNORE INTO metrics ({names}) VALUES ({marks})"
    upsert = (f"INSERT INTO latest_metrics ({names}) VALUES ({marks}) ON CONFLICT (key, run_uuid) DO UPDATE SET "
              + ", ".join(f"{c} = excluded.{c}" for c in changed)
              + " WHERE (excluded.step, excluded.timestamp, excluded.value) > "
                "(latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)")
    return insert, upsert
