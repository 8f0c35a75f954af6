"""A sweep's children list in point order in MLflow's default sort (start time, newest first;
ties by run id, which is random): every child starts at least a millisecond after the point
before it, and no later than needed (issue 26: a vectorized sweep listed 6,7,5,3,4,2,1,0)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient


def _children_in_default_order(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])  # MLflow's default order
    parents = [r for r in runs if r.data.tags.get("regfw.role") == "sweep"]
    assert len(parents) == 1
    assert runs[-1].info.run_id == parents[0].info.run_id  # the parent started first
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]


def _assert_point_order(children: list, points: int, *, together: bool) -> None:
    indices = [int(c.data.tags["regfw.sweep_index"]) for c in children]
    assert indices == list(range(points))[::-1], indices  # the last point on top, each after the one before
    starts = [c.info.start_time for c in children][::-1]
    assert all(b > a for a, b in zip(starts, starts[1:])), starts
    if together:  # a bucket creates its runs at once: a millisecond apart, not more than the time it took
        assert starts[-1] - starts[0] < 2000, starts


def test_the_start_times_one_process_hands_out_are_strictly_increasing():
    # Without the rule, 2000 calls in a loop share milliseconds (a bucket on a fast machine):
    # MLflow's order then falls to the random run id.
    from regfw.start_times import next_start_ms

    starts = [next_start_ms() for _ in range(2000)]
    assert all(b > a for a, b in zip(starts, starts[1:]))
    assert next_start_ms(not_before=starts[-1] + 50) == starts[-1] + 50


@pytest.mark.slow
def test_sweeps_children_list_in_point_order(invoke, store):
    from regfw.store import MlflowTracker

    # One store for all three (creating a store costs seconds): a bucket, a sequential sweep, and
    # runs created as fast as one process can.
    result = invoke("sweep", "linear", "--seeds", "0-7", "--epochs", "5", "--vectorize", "--tracking-uri", store,
                    "--experiment-name", "vectorized", "-q")
    assert result.exit_code == 0, result.stderr
    children = _children_in_default_order(store, "vectorized")
    assert {c.data.tags.get("regfw.bucket") for c in children} == {"bucket 1, 8 points"}
    _assert_point_order(children, 8, together=True)

    result = invoke("sweep", "linear", "--set", "optimizer.lr=0.1,0.2,0.3", "--seeds", "0,1", "--epochs", "5",
                    "--tracking-uri", store, "--experiment-name", "sequential", "-q")
    assert result.exit_code == 0, result.stderr
    _assert_point_order(_children_in_default_order(store, "sequential"), 6, together=False)

    # --jobs 3: points that start together in three processes still create their runs in order.
    result = invoke("sweep", "linear", "--seeds", "0-5", "--epochs", "5", "--jobs", "3", "--tracking-uri", store,
                    "--experiment-name", "jobs", "-q")
    assert result.exit_code == 0, result.stderr
    _assert_point_order(_children_in_default_order(store, "jobs"), 6, together=False)

    trackers = [MlflowTracker(store, "fast").open() for _ in range(12)]
    ids = [t.start(f"r{i}", {}, {}) for i, t in enumerate(trackers)]
    for tracker in trackers:
        tracker.end("FINISHED")
    client = MlflowClient(store)
    listed = client.search_runs([client.get_experiment_by_name("fast").experiment_id])
    assert [r.info.run_id for r in listed] == ids[::-1]
