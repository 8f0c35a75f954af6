"""Runs on a CUDA device; skipped where torch sees none (CI has no GPU)."""

import pytest
import torch
from mlflow import MlflowClient
from conftest import metrics_of

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_linear_trains_on_cuda_and_says_so(invoke, store):
    result = invoke("run", "linear", "--device", "cuda", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    client = MlflowClient(store)
    run = client.search_runs([client.get_experiment_by_name("linear").experiment_id])[0]
    assert run.data.tags["regfw.device"].startswith("cuda")
    assert run.data.tags["regfw.device_name"] == torch.cuda.get_device_name(0)
    assert abs(metrics_of(run)["learned.weight"] - 3.0) < 0.05
    assert abs(metrics_of(run)["learned.bias"] - 10.5) < 0.1


def test_cpu_and_cuda_see_the_same_data(invoke):
    from regfw.config import resolve
    from regfw.plugins import load_plugins
    from regfw.runner import execute
    from regfw.store import NullTracker

    plugins = load_plugins()
    finals = []
    for device in ("cpu", "cuda"):
        config = resolve(plugins.registry, "linear", flags={"device": device})
        finals.append(execute(config, plugins, NullTracker(), run_name="t").summary["optimum_loss"])
    assert finals[0] == pytest.approx(finals[1], rel=1e-5)
