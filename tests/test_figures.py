"""Every metric regfw stores, and every figure it prints, has the same 7 significant digits; the
artifacts keep full precision (issue 26: ``summary/optimum_loss`` 0.08559220841545745 and
``learned/a`` 0.3309805393218994 showed beside 7-digit values in MLflow's UI)."""

from __future__ import annotations

import json
import re

import pytest
from mlflow import MlflowClient

from regfw.figures import figure, rounded
from regfw.store.keys import plain


def test_rounding_keeps_seven_digits_and_changes_a_rounded_value_no_more():
    assert rounded(0.3309805393218994) == 0.3309805 and rounded(0.08559220841545745) == 0.08559221
    assert rounded(123456789.0) == 123456800.0 and rounded(-1.5e-12) == -1.5e-12
    for value in (0.3309805393218994, 2.0 / 3.0, -1e-300, 1e300, 417.06054):
        assert rounded(rounded(value)) == rounded(value)  # a rerun's stored history stays bit for bit
    assert rounded(float("inf")) == float("inf") and rounded(float("nan")) != rounded(float("nan"))
    assert figure(0.08559220841545745) == "0.08559221" and figure(1e-05) == "1e-05"


def _one_run(uri: str, experiment: str):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def _check_run(client, run, stdout: str, tmp_path, learned_names) -> None:
    metrics = {plain(k): v for k, v in run.data.metrics.items()}
    assert metrics and all(rounded(v) == v for v in metrics.values()), metrics
    for key in run.data.metrics:  # every point of every curve, not only the latest
        assert all(rounded(p.value) == p.value for p in client.get_metric_history(run.info.run_id, key))
    # The artifact keeps the digits a comparison needs; the store holds them rounded.
    folder = client.download_artifacts(run.info.run_id, "learned_parameters.json", str(tmp_path / "dl"))
    learned = json.loads(open(folder).read())
    assert set(learned) == set(learned_names)
    assert any(rounded(v) != v for v in learned.values())  # a float64 from a plugin's .item(): more digits
    for name, value in learned.items():
        assert metrics[f"learned.{name}"] == rounded(value)
        assert f"{name}={figure(value)}" in stdout  # printed with the digits the UI shows
    printed = dict(re.findall(r"^  (final_train_loss|optimum_loss|excess_loss) +(\S+)$", stdout, re.M))
    assert set(printed) == {"final_train_loss", "optimum_loss", "excess_loss"}, stdout
    for key, text in printed.items():
        assert text == figure(metrics[key])


def test_a_sqlite_run_stores_and_prints_seven_digits(invoke, store, tmp_path):
    result = invoke("run", "quadratic-param", "--epochs", "300", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    client, run = _one_run(store, "quadratic-param")
    _check_run(client, run, result.stdout, tmp_path, {"a", "b", "c"})


@pytest.mark.slow
def test_a_run_through_mlflows_client_stores_seven_digits(invoke, mlflow_server, tmp_path):
    # An http:// store is written through MlflowClient.log_batch, not regfw's direct SQLite path.
    result = invoke("run", "quadratic-param", "--epochs", "300", "--tracking-uri", mlflow_server)
    assert result.exit_code == 0, result.stderr
    client, run = _one_run(mlflow_server, "quadratic-param")
    _check_run(client, run, result.stdout, tmp_path, {"a", "b", "c"})
    # An http:// store's server is its UI: the run's own page ends the output.
    assert result.stdout.splitlines()[-1] == (f"  open it: {mlflow_server}/#/experiments/{run.info.experiment_id}"
                                              f"/runs/{run.info.run_id}?workflowType=machine_learning")
