"""The ``sequence`` plugin: document 000's CNN + BiLSTM + attention model with its bugs fixed, the
sine-bursts data it learns from, and the same data through ``mlp``."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from regfw_sequence import make_model
from regfw_sequence.model import min_length, shortened

SMALL = dict(in_channels=2, hidden=8, out_features=3, num_layers=1, dropout=0.0, kernel_size=3, stride=1)


def _final(stdout: str, key: str) -> float:
    return float(re.search(rf"^\s*{key}\s+(\S+)", stdout, re.M).group(1))


@pytest.mark.parametrize("kernel_size, stride", [(3, 1), (3, 2), (2, 2), (5, 3), (1, 1)])
def test_min_length_is_the_shortest_sequence_the_stack_leaves_a_step_of(kernel_size, stride):
    need = min_length(kernel_size, stride)
    assert shortened(need, kernel_size, stride) == 1
    assert need == 1 or shortened(need - 1, kernel_size, stride) == 0
    model = make_model(**SMALL | dict(kernel_size=kernel_size, stride=stride), seq_len=need).eval()
    assert model(torch.randn(4, need, 2)).shape == (4, 3)


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("stride, num_layers, dropout", [(1, 1, 0.0), (2, 2, 0.3)])
def test_output_is_batch_by_classes_also_for_a_batch_of_one(batch, stride, num_layers, dropout):
    # The appendix's view(batch, seq_len, ...) used the input's length: with stride 2 the LSTM
    # sees far fewer steps, and its squeeze() made a batch of one a 1-D vector.
    length = 3 * min_length(3, stride)
    assert shortened(length, 3, stride) < length
    model = make_model(**SMALL | dict(stride=stride, num_layers=num_layers, dropout=dropout), seq_len=length)
    for training in (True, False):
        model.train(training)
        out = model(torch.randn(batch, length, 2))
        assert out.shape == (batch, 3)
        assert torch.isfinite(out).all()


def test_dims_fill_the_model_sizes_and_mlp_gets_the_flat_width(invoke):
    sets = ["--set", "dataset.channels=3", "--set", "dataset.n_classes=5", "--set", "dataset.length=40"]
    shown = invoke("show", "sequence", *sets)
    assert shown.exit_code == 0, shown.stderr
    params = yaml.safe_load(shown.stdout)["model"]["params"]
    assert (params["in_channels"], params["out_features"], params["seq_len"]) == (3, 5, 40)
    mlp = yaml.safe_load(invoke("show", "sequence", "--model", "mlp", *sets).stdout)["model"]["params"]
    assert (mlp["in_features"], mlp["out_features"]) == (3 * 40, 5)


@pytest.mark.slow
def test_mlp_trains_on_the_same_sequences(invoke):
    # The mlp takes the (batch, length, channels) sequences themselves: it flattens each sample.
    ran = invoke("run", "sequence", "--model", "mlp", "--set", "dataset.channels=2", "--set", "dataset.n_train=200",
                 "--set", "dataset.n_test=100", "--epochs", "2", "--no-track")
    assert ran.exit_code == 0, ran.stderr
    assert 0 <= _final(ran.stdout, "final_test_accuracy") <= 1


def test_mlp_state_dict_keys_are_unchanged_by_the_flattening():
    from regfw_torch import _mlp

    model = _mlp(4, [8], 2, None)
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert torch.equal(model(torch.ones(3, 2, 2)), model(torch.ones(3, 4)))


@pytest.mark.parametrize("stride", [1, 2])
def test_a_too_short_sequence_is_one_line_naming_the_minimum(invoke, stride):
    need = min_length(3, stride)
    result = invoke("run", "sequence", "--set", f"dataset.length={need - 1}", "--set", f"model.stride={stride}",
                    "--no-track")
    assert result.exit_code != 0
    assert result.stderr.startswith("regfw: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert f"at least {need} steps" in result.stderr and f"got {need - 1}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_short_run_learns_above_chance(invoke):
    n_classes = 4
    result = invoke("run", "sequence", "--no-track", "--epochs", "4", "--batch-size", "32",
                    "--set", "dataset.length=32", "--set", "dataset.n_train=512", "--set", "dataset.n_test=256",
                    "--set", f"dataset.n_classes={n_classes}", "--set", "model.hidden=8")
    assert result.exit_code == 0, result.stderr
    assert _final(result.stdout, "final_test_accuracy") > 1 / n_classes + 0.1


@pytest.mark.slow
def test_a_too_short_sequence_fails_before_any_run_is_recorded(invoke, store):
    result = invoke("run", "sequence", "--set", "dataset.length=5", "--tracking-uri", store)
    assert result.exit_code != 0 and "at least" in result.stderr
    from mlflow import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("sequence")
    assert experiment is None or not client.search_runs([experiment.experiment_id])
