"""Plugin discovery through real entry points: isolation, blocking, strictness, name clashes, typed register."""

from __future__ import annotations

import inspect
import json

import pytest
import yaml

from regfw import hookimpl
from regfw.plugins import load_plugins
from regfw.registry import KINDS, PLURAL

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

def _mse():
    import torch
    return torch.nn.MSELoss()

@hookimpl
def register_losses(register):
    register("mse", _mse, description="a second mse")
    register("acme-only", _mse, description="a name nobody else has")

@hookimpl
def register_experiments(register):
    register("acme-exp", dataset="linear-1d", model="linear", loss="mse", optimizer="sgd")
"""

# One component per registry with the name a built-in plugin already uses.
SAME_NAME = {
    "model": ("linear", 'register("linear", lambda in_features, out_features: None, params={"in_features": 1, "out_features": 1})'),
    "dataset": ("linear-1d", 'register("linear-1d", lambda generator: None, dims=lambda p: {})'),
    "loss": ("mse", 'register("mse", lambda: None)'),
    "optimizer": ("sgd", 'register("sgd", lambda parameters, lr: None, params={"lr": 0.1})'),
    "experiment": ("linear", 'register("linear", dataset="linear-1d", model="linear", loss="l1", optimizer="adam")'),
}


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
        (RAISES_IN_REGISTER, "while registering (register_models): RuntimeError: registration exploded"),
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


def _config(invoke, *args):
    result = invoke("show", *args)
    assert result.exit_code == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_a_clash_affects_only_the_clashing_name(fake_dist, invoke):
    fake_dist("acme-dup", {"acme_dup": DUPLICATE}, {"acme-dup": "acme_dup"})
    # Each experiment keeps the mse of its own package; the plain name alone is ambiguous and says how to choose.
    assert _config(invoke, "linear")["loss"]["name"] == "torch:mse"
    assert _config(invoke, "acme-exp")["loss"]["name"] == "acme-dup:mse"
    run = invoke("run", "linear", "--no-track", "--epochs", "1")
    assert run.exit_code == 0 and "failed to load" not in run.stderr, run.stderr
    plain = invoke("run", "linear", "--no-track", "--epochs", "1", "--loss", "mse")
    assert plain.exit_code != 0
    assert plain.stderr == ("regfw: error: loss 'mse' is registered by plugins 'acme-dup' and 'torch'; "
                            "choose one with --loss acme-dup:mse or --loss torch:mse\n")
    # Both plugins stay ok, with a note; every other name of both keeps working unqualified.
    info = {i["name"]: i for i in json.loads(invoke("plugins", "--json").stdout)}
    for name, other in (("torch", "acme-dup"), ("acme-dup", "torch")):
        assert (info[name]["status"], info[name]["error"]) == ("ok", None)
        assert info[name]["notes"] == [f"loss 'mse' is also registered by '{other}': use {name}:mse"]
    line = next(l for l in invoke("plugins").stdout.splitlines() if l.startswith("acme-dup"))
    assert "ok; note: loss 'mse' is also registered by 'torch': use acme-dup:mse" in line
    listed = [row.split()[0] for row in invoke("list", "losses").stdout.splitlines()[2:]]
    assert {"torch:mse", "acme-dup:mse", "acme-only", "huber"} <= set(listed) and "mse" not in listed
    assert _config(invoke, "linear", "--loss", "acme-only", "--optimizer", "adam")["optimizer"]["name"] == "adam"


@pytest.mark.parametrize("how", ["flag", "set", "config", "config-name"])
def test_a_side_is_chosen_with_a_qualified_name_wherever_a_name_is_accepted(fake_dist, invoke, tmp_path, how):
    fake_dist("acme-dup", {"acme_dup": DUPLICATE}, {"acme-dup": "acme_dup"})
    path = tmp_path / "config.yaml"
    path.write_text("loss: acme-dup:mse\n" if how == "config" else "loss: {name: 'acme-dup:mse'}\n")
    args = {"flag": ["--loss", "acme-dup:mse"], "set": ["--set", "loss=acme-dup:mse"]}.get(how, ["--config", path])
    assert _config(invoke, "linear", *args)["loss"] == {"name": "acme-dup:mse", "params": {}}


@pytest.mark.parametrize("kind", KINDS)
def test_every_registry_keeps_both_sides_of_a_clash(fake_dist, kind):
    from regfw.config import resolve
    from regfw.errors import RegfwError

    name, call = SAME_NAME[kind]
    owner = load_plugins().registry.get(kind, name).plugin
    source = f"from regfw import hookimpl\n\n@hookimpl\ndef register_{PLURAL[kind]}(register):\n    {call}\n"
    fake_dist("acme", {"acme_same": source}, {"acme": "acme_same"})
    loaded = load_plugins()
    registry = loaded.registry
    flag = f"--{kind} " if kind != "experiment" else ""
    with pytest.raises(RegfwError) as plain:
        registry.get(kind, name)
    assert str(plain.value) == (f"{kind} '{name}' is registered by plugins 'acme' and '{owner}'; "
                                f"choose one with {flag}acme:{name} or {flag}{owner}:{name}")
    assert registry.get(kind, f"acme:{name}").plugin == "acme" and registry.get(kind, f"{owner}:{name}").plugin == owner
    assert loaded.info["acme"].status == loaded.info[owner].status == "ok"
    untouched = [e for k in KINDS for e in registry.all(k) if e.plugin == owner and (k, e.name) != (kind, f"{owner}:{name}")]
    assert untouched and all(registry.get(e.kind, e.name) is e and ":" not in e.name for e in untouched)
    if kind == "experiment":
        assert resolve(registry, f"{owner}:{name}").loss.name == "mse"
        assert resolve(registry, f"acme:{name}").loss.name == "l1"
    else:  # the built-in experiment keeps its own package's part; a user may swap in the other side
        assert getattr(resolve(registry, "linear"), kind).name == f"{owner}:{name}"
        assert getattr(resolve(registry, "linear", swaps={kind: f"acme:{name}"}), kind).name == f"acme:{name}"


def test_a_qualified_name_works_for_any_name(invoke):
    # The same component by either name: the experiment's overrides (sgd's lr) are kept, the plain name recorded.
    assert _config(invoke, "binary", "--optimizer", "torch:sgd") == _config(invoke, "binary", "--optimizer", "sgd")
    assert _config(invoke, "binary", "--optimizer", "torch:sgd")["optimizer"]["params"]["lr"] != \
        _config(invoke, "binary", "--optimizer", "adam")["optimizer"]["params"]["lr"]
    assert _config(invoke, "binary", "--set", "optimizer=torch:adam")["optimizer"]["name"] == "adam"
    assert _config(invoke, "linear:linear")["experiment"] == "linear:linear"
    wrong = invoke("show", "linear", "--optimizer", "linear:adam")
    assert wrong.exit_code != 0
    assert wrong.stderr == "regfw: error: optimizer 'adam' is not registered by plugin 'linear'; it is by 'torch'\n"


@pytest.mark.slow
def test_the_run_records_the_side_it_used(fake_dist, invoke, store):
    from mlflow import MlflowClient

    fake_dist("acme-dup", {"acme_dup": DUPLICATE}, {"acme-dup": "acme_dup"})
    result = invoke("run", "linear", "--epochs", "2", "--loss", "acme-dup:mse", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    client = MlflowClient(store)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.data.params["loss"] == run.data.tags["regfw.loss"] == "acme-dup:mse"
    assert run.data.tags["regfw.loss.plugin"].startswith("acme-dup (acme-dup ")
    assert run.data.params["optimizer"] == "sgd"  # unique names stay plain


def test_debug_prints_the_traceback_of_a_hook_that_raised(fake_dist, invoke):
    fake_dist("acme-broken", {"acme_broken": RAISES_IN_REGISTER}, {"acme-broken": "acme_broken"})
    quiet = invoke("list", "models")
    assert quiet.exit_code == 0 and "Traceback" not in quiet.stderr and "'acme-broken' failed to load" in quiet.stderr
    loud = invoke("list", "models", env={"REGFW_DEBUG": "1"})
    assert loud.exit_code == 0
    assert "plugin 'acme-broken' failed to load: traceback follows" in loud.stderr
    assert "Traceback (most recent call last)" in loud.stderr and "in register_models" in loud.stderr
    assert "acme_broken.py" in loud.stderr and "RuntimeError: registration exploded" in loud.stderr


@pytest.mark.parametrize("call, expected", [
    ('register_datasets(register):\n    register("s", lambda generator: None, dimz=lambda p: {})',
     "while registering (register_datasets): TypeError: register() got an unexpected keyword argument 'dimz'"),
    ('register_models(register):\n    register("m", lambda: None, dims=lambda p: {})',
     "while registering (register_models): TypeError: register() got an unexpected keyword argument 'dims'"),
    ('register_experiments(register):\n    register("e", dataset="linear-1d", model="linear", loss="mse")',
     "while registering (register_experiments): TypeError: register() missing 1 required keyword-only argument: "
     "'optimizer'"),
    ('register_losses(register):\n    register("twice", lambda: None)\n    register("twice", lambda: None)',
     "while registering (register_losses): TypeError: loss 'twice' is registered twice"),
    ('register_losses(register):\n    register("torch:mse", lambda: None)',
     "TypeError: loss name must be a non-empty string without spaces or ':', got 'torch:mse'"),
    ('register_experiments(register):\n    register("e", dataset="linear-1d", model="linear", loss="mse", '
     'optimizer="sgd", artifacts="plots.png")',
     "TypeError: experiment 'e': artifacts must be a callable write(folder, run), got 'plots.png'"),
], ids=["dataset-keyword", "model-dims", "experiment-missing-part", "twice", "colon", "artifacts-not-callable"])
def test_register_rejects_what_its_signature_does_not_take(fake_dist, invoke, call, expected):
    fake_dist("acme-typo", {"acme_typo": f"from regfw import hookimpl\n\n@hookimpl\ndef {call}\n"},
              {"acme-typo": "acme_typo"})
    line = next(l for l in invoke("plugins").stdout.splitlines() if l.startswith("acme-typo"))
    assert "error: " in line and expected in line


def _old_writer(folder, model, data, config):
    sizes = len(data.x_train) == config.dataset.params["n_samples"]
    (folder / "old.txt").write_text(f"{config.model.name} {callable(model.state_dict)} {sizes}")


def _new_writer(folder, run):
    (folder / "new.txt").write_text(f"{run.config['model']['name']} {run.status} {run.params['optimizer']}")


def test_artifacts_is_a_named_argument_and_the_old_extras_form_still_registers():
    import sys

    from regfw.runner import artifacts_writer

    @hookimpl
    def register_experiments(register):
        register("new", dataset="linear-1d", model="linear", loss="mse", optimizer="sgd", artifacts=_new_writer)
        register("old", dataset="linear-1d", model="linear", loss="mse", optimizer="sgd",
                 extras={"artifacts": _old_writer})

    plugin = type(sys)("writers")
    plugin.register_experiments = register_experiments
    registry = load_plugins({"writers": plugin}, entry_points=False).registry
    new, old = registry.get("experiment", "new"), registry.get("experiment", "old")
    assert (new.artifacts, new.extras) == (_new_writer, {}) and old.artifacts is None
    assert artifacts_writer(new) is _new_writer and artifacts_writer(old) is _old_writer


@pytest.mark.slow
@pytest.mark.parametrize("writer, file, expected", [
    ("artifacts=_new_writer", "new.txt", "linear FINISHED sgd"),
    ('extras={"artifacts": _old_writer}', "old.txt", "linear True True"),
], ids=["artifacts-run-view", "extras-0.1"])
def test_an_experiments_writer_adds_its_files_to_the_run(fake_dist, invoke, store, writer, file, expected):
    from mlflow import MlflowClient

    source = inspect.getsource(_old_writer) + "\n" + inspect.getsource(_new_writer) + f"""
from regfw import hookimpl

@hookimpl
def register_experiments(register):
    register("acme-w", dataset="linear-1d", model="linear", loss="mse", optimizer="sgd", {writer})
"""
    fake_dist("acme-w", {"acme_w": source}, {"acme-w": "acme_w"})
    result = invoke("run", "acme-w", "--epochs", "2", "--tracking-uri", store)
    assert result.exit_code == 0, result.stderr
    client = MlflowClient(store)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    with open(client.download_artifacts(run.info.run_id, file)) as handle:
        assert handle.read() == expected


def test_in_process_plugins_only():
    import sys

    plugin = type(sys)("inline")
    exec(GOOD, plugin.__dict__)
    loaded = load_plugins({"inline": plugin}, entry_points=False)
    assert loaded.registry.names("model") == ["acme-net"]
    assert loaded.registry.names("experiment") == []
