"""Plugin discovery through real entry points: isolation, blocking, strictness, conflicts."""

from __future__ import annotations

import json

import pytest

from regfw.plugins import load_plugins

GOOD = """
from regfw import hookimpl

def _model(width):
    import torch.nn
    return torch.nn.Linear(1, width)

@hookimpl
def register_models(register):
    register("acme-net", _model, description="Acme's model", params={"width": 1})
"""

BROKEN_IMPORT = """
raise ImportError("acme_broken needs a library that is not installed")
"""

RAISES_IN_REGISTER = """
from regfw import hookimpl

@hookimpl
def register_models(register):
    register("half-registered", lambda: None, description="never listed")
    raise RuntimeError("registration exploded")
"""

MISSPELLED_HOOK = """
from regfw import hookimpl

@hookimpl
def register_model(register):
    register("typo", lambda: None)
"""

SIDE_EFFECT = """
import os
open(os.environ["REGFW_TEST_MARKER"], "w").write("imported")
from regfw import hookimpl
"""

DUPLICATE = """
from regfw import hookimpl

@hookimpl
def register_losses(register):
    register("mse", lambda: None, description="a second mse")
"""


def test_builtin_plugins_come_through_entry_points():
    loaded = load_plugins()
    assert {"linear", "torch"} <= set(loaded.info)
    assert loaded.info["linear"].distribution == "regfw"
    assert "register_experiments" in loaded.info["linear"].hooks
    assert "linear" in loaded.registry.names("experiment")


def test_third_party_plugin_is_discovered(fake_dist, invoke):
    fake_dist("acme", {"acme_plugin": GOOD}, {"acme": "acme_plugin"}, version="1.2.3")
    result = invoke("list", "models")
    assert result.exit_code == 0
    assert "acme-net" in result.stdout and "acme" in result.stdout
    info = json.loads(invoke("plugins", "--json").stdout)
    acme = next(i for i in info if i["name"] == "acme")
    assert (acme["distribution"], acme["version"], acme["status"]) == ("acme", "1.2.3", "ok")
    assert acme["hooks"] == ["register_models"]


@pytest.mark.parametrize(
    "source, expected",
    [
        (BROKEN_IMPORT, "ImportError: acme_broken needs a library"),
        (RAISES_IN_REGISTER, "while registering: RuntimeError: registration exploded"),
        (MISSPELLED_HOOK, "register_model"),
    ],
    ids=["import-error", "register-raises", "misspelled-hook"],
)
def test_broken_plugin_is_reported_and_the_rest_works(fake_dist, invoke, source, expected):
    fake_dist("acme-broken", {"acme_broken": source}, {"acme-broken": "acme_broken"})
    plugins = invoke("plugins")
    assert plugins.exit_code == 0
    line = next(l for l in plugins.stdout.splitlines() if l.startswith("acme-broken"))
    assert "error" in line and expected in line
    listing = invoke("list", "experiments")
    assert listing.exit_code == 0 and "linear" in listing.stdout
    assert "half-registered" not in invoke("list", "models").stdout  # all or nothing per plugin
    assert "failed to load" in listing.stderr


def test_strict_mode_turns_a_load_failure_into_an_error(fake_dist, invoke):
    fake_dist("acme-broken", {"acme_broken": BROKEN_IMPORT}, {"acme-broken": "acme_broken"})
    result = invoke("list", env={"REGFW_STRICT_PLUGINS": "1"})
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and "acme-broken" in result.stderr and "Traceback" not in result.stderr


def test_disabled_plugin_is_never_imported(fake_dist, invoke, tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("REGFW_TEST_MARKER", str(marker))
    fake_dist("acme-side", {"acme_side": SIDE_EFFECT}, {"acme-side": "acme_side"})
    result = invoke("plugins", env={"REGFW_DISABLE_PLUGINS": "acme-side,linear"})
    assert not marker.exists()
    assert "disabled" in next(l for l in result.stdout.splitlines() if l.startswith("acme-side"))
    listed = invoke("list", "experiments", env={"REGFW_DISABLE_PLUGINS": "linear"}).stdout
    assert "linear" not in [line.split()[0] for line in listed.splitlines()[2:] if line.strip()]
    # without the block it is imported: the marker proves the test can fail
    invoke("plugins")
    assert marker.exists()


def test_duplicate_name_is_an_error_naming_both_plugins(fake_dist, invoke):
    fake_dist("acme-dup", {"acme_dup": DUPLICATE}, {"acme-dup": "acme_dup"})
    result = invoke("run", "linear", "--no-track", "--epochs", "1")
    assert result.exit_code != 0
    assert "'torch'" in result.stderr and "'acme-dup'" in result.stderr and "mse" in result.stderr
    status = invoke("plugins").stdout
    assert "conflict" in next(l for l in status.splitlines() if l.startswith("acme-dup"))
    # the conflict does not take down the plugin's other names
    assert "sgd" in invoke("list", "optimizers").stdout


def test_in_process_plugins_only():
    import sys

    plugin = type(sys)("inline")
    exec(GOOD, plugin.__dict__)
    loaded = load_plugins({"inline": plugin}, entry_points=False)
    assert loaded.registry.names("model") == ["acme-net"]
    assert loaded.registry.names("experiment") == []
