"""The plugin's own tests, written with regfw.testing as any third-party author would."""

import math

import pytest

import regfw_example
from regfw.testing import check_plugin, plugins_for, run_experiment


def test_every_component_conforms():
    check_plugin(regfw_example).assert_ok()


def test_sine_recovers_the_wave():
    result = run_experiment("sine", regfw_example, epochs=300, track=False)
    # sin(2x + 0.5) = cos(0.5) sin(2x) + sin(0.5) cos(2x), scaled by the amplitude 1.5
    assert result.learned["sin2"] == pytest.approx(1.5 * math.cos(0.5), abs=0.05)
    assert result.learned["cos2"] == pytest.approx(1.5 * math.sin(0.5), abs=0.05)
    assert result.metrics["excess_loss"] < 1e-3


def test_lion_trains_a_builtin_model():
    # The optimizer is not tied to our experiment: it trains regfw's mlp on our data.
    plugins = plugins_for(regfw_example)
    result = run_experiment("sine", plugins, model="mlp", sets={"model.hidden": [16], "optimizer.lr": 0.01},
                            epochs=200, track=False)
    losses = result.curve("train_loss")
    assert losses[-1] < losses[0] / 3
