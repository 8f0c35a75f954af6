"""Names several plugins register (issue 28): installing a plugin never changes or breaks what an
existing experiment means, and every override works on every command the way ``show`` takes it.

The distributions are real: a dist-info with ``regfw`` entry points on the path, found by
importlib.metadata exactly as an installed package is (``fake_dist`` in conftest)."""

from __future__ import annotations

import yaml

# A third-party experiment written as the tutorial writes it: its own model, regfw's data, loss
# and optimizer by their plain names.
AUTHOR = """
from regfw import hookimpl

def _line():
    import torch
    return torch.nn.Linear(1, 1)

@hookimpl
def register_models(register):
    register("acme-line", _line, description="Acme's line")

@hookimpl
def register_experiments(register):
    register("acme-exp", dataset="linear-1d", model="acme-line", loss="mse", optimizer="sgd",
             train={"epochs": 2})
    register("acme-fancy", dataset="linear-1d", model="acme-line", loss="fancy", optimizer="sgd",
             train={"epochs": 2})
"""

# Another plugin, installed later, that also registers a loss 'mse' (and 'fancy').
OTHER = """
from regfw import hookimpl

def _mse():
    import torch
    return torch.nn.MSELoss()

@hookimpl
def register_losses(register):
    register("mse", _mse, description="another mse")
    register("fancy", _mse, description="another fancy")
"""

# A third plugin whose 'fancy' the author's experiment meant: fancy is now a clash between two
# plugins that are neither the experiment's own nor regfw's.
LIBRARY = """
from regfw import hookimpl

def _l1():
    import torch
    return torch.nn.L1Loss()

@hookimpl
def register_losses(register):
    register("fancy", _l1, description="the library's fancy")
"""


def _install(fake_dist, *, library=False):
    fake_dist("acme", {"acme_shared": AUTHOR}, {"acme": "acme_shared"})
    fake_dist("other", {"other_shared": OTHER}, {"other": "other_shared"})
    if library:
        fake_dist("lib", {"lib_shared": LIBRARY}, {"lib": "lib_shared"})


def _shown(invoke, *args) -> dict:
    result = invoke("show", *args)
    assert result.exit_code == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _ok(result):
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "registered by plugins" not in result.stderr
    return result


def test_an_experiments_plain_name_keeps_meaning_regfws_component(fake_dist, invoke, tmp_path):
    _install(fake_dist)
    # The rule: the experiment's own plugin, then its distribution, then regfw's built-ins.
    assert _shown(invoke, "acme-exp")["loss"]["name"] == "torch:mse"
    _ok(invoke("run", "acme-exp", "--no-track", "-q"))
    # Every way of choosing the other side, on every command that resolves the experiment.
    config = tmp_path / "other.yaml"
    config.write_text(invoke("show", "acme-exp", "--loss", "other:mse").stdout)
    for how in (["--loss", "torch:mse"], ["--set", "loss=torch:mse"], ["--loss", "l1"], ["--loss", "other:mse"],
                ["--config", config]):
        _ok(invoke("run", "acme-exp", "--no-track", "-q", *how))
        dry = _ok(invoke("sweep", "acme-exp", "--dry-run", "--set", "optimizer.lr=0.1,0.2", *how))
        assert "2 points" in dry.stdout
    assert _shown(invoke, "acme-exp", "--config", config)["loss"]["name"] == "other:mse"
    # The author's own check passes though another plugin registers mse.
    check = _ok(invoke("check", "acme"))
    assert "FAIL" not in check.stdout
    # A user's own plain name stays a choice they make: ambiguous, and said how to choose.
    plain = invoke("run", "acme-exp", "--no-track", "--loss", "mse")
    assert plain.exit_code != 0
    assert plain.stderr == ("regfw: error: loss 'mse' is registered by plugins 'other' and 'torch'; "
                            "choose one with --loss other:mse or --loss torch:mse\n")


def test_a_clash_among_other_plugins_is_ambiguous_but_every_override_works(fake_dist, invoke, tmp_path):
    _install(fake_dist, library=True)
    unresolved = invoke("show", "acme-fancy")
    assert unresolved.exit_code != 0
    assert unresolved.stderr == ("regfw: error: loss 'fancy' is registered by plugins 'lib' and 'other'; "
                                 "choose one with --loss lib:fancy or --loss other:fancy\n")
    config = tmp_path / "lib.yaml"
    config.write_text(invoke("show", "acme-fancy", "--loss", "lib:fancy").stdout)
    for how in (["--loss", "lib:fancy"], ["--set", "loss=lib:fancy"], ["--loss", "l1"], ["--config", config]):
        assert _shown(invoke, "acme-fancy", *how)["loss"]["name"] in ("lib:fancy", "l1")
        _ok(invoke("run", "acme-fancy", "--no-track", "-q", *how))
        dry = _ok(invoke("sweep", "acme-fancy", "--dry-run", "--set", "optimizer.lr=0.1,0.2", *how))
        # The override resolved (no ambiguity error) and the points are named by what tells them apart.
        assert "2 points" in dry.stdout and "[1] lr=0.1" in dry.stdout
