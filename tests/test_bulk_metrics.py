"""store.bulk writes metric rows that MLflow's own API reads back exactly as if log_batch wrote them.

Two runs in one real SQLite store get the same rows, one through ``MlflowClient.log_batch``, the
other through ``regfw.store.bulk`` (on a ``DirectStore``'s connection); every view MLflow offers (history per key, latest metrics,
search and ordering by a metric) must agree. If a new MLflow changes its tables, this fails.
"""

from __future__ import annotations

import math

import pytest

from regfw.store import open_client
from regfw.store.bulk import write_metrics
from regfw.store.direct import DirectStore
from regfw.store.tracker import MlflowTracker

ROWS = [  # (key, value, step, timestamp): out of order, a NaN, infinities, a later row with a lower step
    ("curves/train_loss", 1.5, 1, 1000), ("curves/train_loss", 0.25, 3, 1001), ("curves/train_loss", 0.5, 2, 1002),
    ("curves/test_loss", float("nan"), 1, 1000), ("curves/test_loss", 2.0, 2, 999),
    ("summary/final_train_loss", float("inf"), 0, 1000), ("summary/low", float("-inf"), 0, 1000),
    ("curves/train_loss", 0.25, 3, 1001),  # the same row twice: stored once, as MLflow does
]


def history(client, run_id, key):
    return [(m.step, m.timestamp, "nan" if math.isnan(m.value) else m.value)
            for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))]


@pytest.fixture
def two_runs(store):
    MlflowTracker(store, "bulk").open()  # the store and a regfw experiment, made by MLflow
    client = open_client(store)
    experiment = client.get_experiment_by_name("bulk").experiment_id
    runs = [client.create_run(experiment).info.run_id for _ in range(2)]
    return client, experiment, runs


@pytest.fixture
def direct(store, two_runs):
    opened = DirectStore.open(store, "bulk")
    assert opened is not None
    yield opened
    opened.close()


def test_rows_read_back_as_log_batch_writes_them(two_runs, direct):
    from mlflow.entities import Metric

    client, experiment, (by_mlflow, by_bulk) = two_runs
    for half in (ROWS[:4], ROWS[4:]):  # two batches: the latest value must survive across them
        client.log_batch(by_mlflow, metrics=[Metric(k, v, ts, s) for k, v, s, ts in half])
        write_metrics(direct, {by_bulk: half})
    keys = {k for k, *_ in ROWS}
    for key in keys:
        assert history(client, by_bulk, key) == history(client, by_mlflow, key), key
    latest = [client.get_run(r).data.metrics for r in (by_mlflow, by_bulk)]
    assert set(latest[0]) == keys
    for key in keys:
        a, b = latest[0][key], latest[1][key]
        assert (math.isnan(a) and math.isnan(b)) or a == b, key
    ordered = client.search_runs([experiment], order_by=["metrics.`curves/train_loss` ASC"])
    assert {r.data.metrics["curves/train_loss"] for r in ordered} == {0.25}


def test_a_later_batch_with_an_older_step_keeps_the_latest(two_runs, direct):
    client, _, (run, _) = two_runs
    write_metrics(direct, {run: [("curves/train_loss", 0.1, 10, 5000)]})
    write_metrics(direct, {run: [("curves/train_loss", 9.0, 2, 6000)]})
    assert client.get_run(run).data.metrics["curves/train_loss"] == 0.1
    assert [m.step for m in client.get_metric_history(run, "curves/train_loss")] == [10, 2]


def test_many_runs_in_one_write(two_runs, direct):
    client, _, runs = two_runs
    write_metrics(direct, {run: [("curves/train_loss", float(i), s, 1000) for s in range(1, 501)]
                                          for i, run in enumerate(runs)})
    for i, run in enumerate(runs):
        assert len(client.get_metric_history(run, "curves/train_loss")) == 500
        assert client.get_run(run).data.metrics["curves/train_loss"] == float(i)


def test_the_tracker_writes_through_it_and_the_run_reads_back(store):
    MlflowTracker(store, "bulk").open()  # creates the store: the next tracker writes it directly
    tracker = MlflowTracker(store, "bulk").open()
    assert tracker.direct is not None
    tracker.start("r", {"lr": 0.1}, {})
    tracker.log_metrics([("train_loss", 1.0 / s, s) for s in range(1, 2501)])  # over one flush's rows
    tracker.end("FINISHED")
    client = open_client(store)
    assert len(client.get_metric_history(tracker.run_id, "curves/train_loss")) == 2500
    assert client.get_run(tracker.run_id).data.metrics["curves/train_loss"] == pytest.approx(1 / 2500)
