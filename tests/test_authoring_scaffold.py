"""`regfw new-plugin`: the skeleton installs, passes its own tests and shows up in `regfw list`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

NAME = "scaffold-probe"


def pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_new_plugin_installs_passes_its_own_test_and_is_listed(invoke, regfw_script, tmp_path):
    created = invoke("new-plugin", NAME, "--dir", tmp_path)
    assert created.exit_code == 0, created.stderr
    folder = tmp_path / NAME
    files = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert files == {"pyproject.toml", "README.md", "regfw_scaffold_probe/__init__.py",
                     "regfw_scaffold_probe/components.py", "tests/test_regfw_scaffold_probe.py"}
    assert f'{NAME} = "regfw_scaffold_probe"' in (folder / "pyproject.toml").read_text()
    source = (folder / "regfw_scaffold_probe" / "__init__.py").read_text()
    assert "import torch\n" not in source.split("def ")[0]  # the module top stays torch-free
    # A real pip install, but into a folder of its own (PYTHONPATH for the subprocesses below):
    # installing into the shared venv would show a half-installed plugin to tests running in parallel.
    site = tmp_path / "site"
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    installed = pip("install", "--no-deps", *isolation, "--target", str(site), str(folder))
    assert installed.returncode == 0, installed.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGFW_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(site)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "3 passed" in tests.stdout
    listing = regfw_script("list", env={"PYTHONPATH": str(site)})
    assert listing.returncode == 0, listing.stderr
    rows = {tuple(line.split()[:2]) for line in listing.stdout.splitlines() if line.strip()}
    for component in ("", "-line", "-affine", "-logcosh", "-heavyball"):
        assert (NAME + component, NAME) in rows, listing.stdout
    assert NAME not in regfw_script("list").stdout  # nothing leaked into the shared environment


@pytest.mark.parametrize("name, message", [
    ("Demo", "lowercase letters"),
    ("my_plugin", "lowercase letters"),
    ("torch", "already installed (by regfw)"),
])
def test_new_plugin_rejects_bad_or_taken_names(invoke, tmp_path, name, message):
    result = invoke("new-plugin", name, "--dir", tmp_path)
    assert result.exit_code != 0 and message in result.stderr and result.stderr.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_new_plugin_never_overwrites(invoke, tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "notes.txt").write_text("mine")
    result = invoke("new-plugin", "demo", "--dir", tmp_path)
    assert result.exit_code != 0 and "already exists and is not empty" in result.stderr
    assert (tmp_path / "demo" / "notes.txt").read_text() == "mine"
    prefixed = invoke("new-plugin", "regfw-other", "--dir", tmp_path)
    assert prefixed.exit_code == 0 and (tmp_path / "other" / "regfw_other" / "__init__.py").exists()


@pytest.mark.parametrize("name", ["ab", "a-much-longer-plugin-name"])
def test_new_plugin_readme_is_true(invoke, tmp_path, name):
    assert invoke("new-plugin", name, "--dir", tmp_path).exit_code == 0
    readme = (tmp_path / name / "README.md").read_text()
    table = [line for line in readme.splitlines() if line.startswith("|")]
    assert len(table) == 7 and len({len(line) for line in table}) == 1  # aligned, whatever the name's length
    assert f"| experiment | `{name}` " in readme and f"`{name}-heavyball`" in readme
    # What a clash does (docs/plugins.md), and no venv path that means regfw's own folder.
    assert "is an error naming both" not in readme and f"`{name}:NAME`" in readme and "ambiguous" in readme
    assert ".venv/bin" not in readme
