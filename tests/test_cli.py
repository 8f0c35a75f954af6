"""The CLI as a user meets it: help, list, show, and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

CUDA = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                      capture_output=True, text=True).stdout.strip() == "True"


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "models"], ["plugins"], ["plugins", "--json"],
                                  ["sweep", "--help"], ["tune", "--help"]])
def test_light_commands_import_neither_torch_nor_mlflow(args):
    code = (
        "import sys\n"
        "from regfw.cli import cli\n"
        "try:\n"
        f"    cli.main(args={args!r}, prog_name='regfw')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = sorted(m for m in ('torch', 'mlflow', 'torchvision', 'matplotlib', 'rich', 'ray', 'optuna') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_installed_script_help_and_version(regfw_script):
    help_ = regfw_script("--help")
    assert help_.returncode == 0 and "regfw run linear" in help_.stdout
    assert regfw_script("--version").stdout.strip().startswith("regfw, version")


def test_list_shows_name_plugin_description(invoke):
    result = invoke("list")
    assert result.exit_code == 0
    for heading in ("experiments:", "models:", "datasets:", "losses:", "optimizers:"):
        assert heading in result.stdout
    line = next(l for l in result.stdout.splitlines() if l.startswith("linear-1d"))
    assert "linear" in line.split()[1] and "U[0,1)" in line


@pytest.mark.slow
def test_show_prints_what_run_uses_and_round_trips_through_config(invoke, tmp_path, store):
    shown = invoke("show", "linear", "--optimizer", "adam", "--set", "optimizer.lr=0.1", "--epochs", "7")
    assert shown.exit_code == 0, shown.stderr
    data = yaml.safe_load(shown.stdout)
    assert data["optimizer"] == {"name": "adam", "params": {"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0}}
    assert data["train"]["epochs"] == 7 and data["model"]["params"] == {"in_features": 1, "out_features": 1}
    path = tmp_path / "c.yaml"
    path.write_text(shown.stdout)
    assert invoke("show", "linear", "--config", path).stdout == shown.stdout
    ran = invoke("run", "linear", "--config", path, "--tracking-uri", store, "-q")
    assert ran.exit_code == 0, ran.stderr
    from mlflow import MlflowClient

    run = MlflowClient(store).search_runs([MlflowClient(store).get_experiment_by_name("linear").experiment_id])[0]
    assert run.data.params["optimizer"] == "adam" and run.data.params["train.epochs"] == "7"


def test_swapping_a_component_starts_from_its_defaults(invoke):
    data = yaml.safe_load(invoke("show", "linear", "--optimizer", "rmsprop").stdout)
    assert data["optimizer"]["params"]["lr"] == 0.01 and "alpha" in data["optimizer"]["params"]
    model = yaml.safe_load(invoke("show", "linear", "--model", "mlp").stdout)["model"]
    assert model["params"]["in_features"] == 1 and model["params"]["out_features"] == 1  # from the dataset


BAD = [
    (["run", "lnear"], "did you mean 'linear'"),
    (["show", "linear", "--model", "lineer"], "did you mean 'linear'"),
    (["run", "linear", "--optimizer", "adma", "--no-track"], "did you mean 'adam'"),
    *([(["run", "linear", "--device", "cuda", "--no-track"], "not available")] if not CUDA else []),
    (["run", "linear", "--device", "gpu", "--no-track"], "device must be"),
    (["run", "linear", "--set", "optimizer.lrr=1"], "valid keys: lr, momentum"),
    (["run", "linear", "--set", "optimizer.lr=abc"], "optimizer.lr expects a number"),
    (["run", "linear", "--set", "train.batch_size=0"], "at least 1"),
    (["run", "linear", "--set", "nonsense"], "key=value"),
    (["run", "linear", "--set", "trian.epochs=3"], "unknown key 'trian.epochs'"),
    (["run", "linear", "--epochs", "0"], "train.epochs must be at least 1"),
    (["run", "linear", "--epochs", "x"], "'x' is not a valid integer"),
    (["run", "linear", "--lr", "inf"], "finite"),
    (["run", "linear", "--lr", "-1"], "greater than 0"),
    (["run", "linear", "--config", "missing.yaml"], "config file not found"),
    (["list", "modles"], "did you mean 'models'"),
    (["rnu"], "Did you mean 'run'"),
]


@pytest.mark.parametrize("args, expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_non_zero(invoke, args, expected):
    result = invoke(*args)
    assert result.exit_code != 0
    assert result.stderr.startswith("regfw: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("text, expected", [
    ("optimizer: [unclosed", "not valid YAML at line 1"),
    ("- a\n- b\n", "must hold a mapping"),
    ("optimiser: {}\n", "did you mean 'optimizer'"),
    ("train: {epochs: -2}\n", "train.epochs must be at least 1"),
    ("experiment: quadratic\n", "not 'linear'"),
])
def test_bad_config_files(invoke, tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = invoke("run", "linear", "--config", path, "--no-track")
    assert result.exit_code != 0 and expected in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_bad_input_through_the_installed_script(regfw_script):
    result = regfw_script("run", "lnear")
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr == "regfw: error: unknown experiment 'lnear' (did you mean 'linear'?)\n"
    if CUDA:
        return
    cuda = regfw_script("run", "linear", "--device", "cuda")
    assert cuda.returncode != 0 and "Traceback" not in cuda.stderr and cuda.stderr.count("\n") == 1
