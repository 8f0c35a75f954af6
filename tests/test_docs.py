"""docs/plugins.md stays true: a section with the exact signature of every hook, every setting
documented, and its code (hook examples and the tutorial plugin) actually works."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import sys
import tomllib
import types
from pathlib import Path

import pluggy
import pytest

import regfw
from regfw import hookspecs
from regfw.cli import cli
from regfw.params import Param
from regfw.plugins import HOOKS
from regfw.registry import registrar
from regfw.train_schema import TRAIN_KEYS
from regfw.testing import check_plugin

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
FENCE = re.compile(r"(?:<!-- (check|file): ?([^>]*?) -->\n)?```(\w*)\n(.*?)```", re.S)


def specs() -> dict[str, list[str]]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return {name: list(getattr(pm.hook, name).spec.argnames) for name in dir(pm.hook)
            if not name.startswith("_") and getattr(getattr(pm.hook, name), "spec", None)}


def sections() -> dict[str, str]:
    """``### heading`` -> the text up to the next heading of level 2 or 3."""
    parts = re.split(r"^(#{2,3} .*)$", DOC, flags=re.M)
    return {parts[i].lstrip("#").strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def blocks(text: str = DOC):
    return [(m.group(1), m.group(2), m.group(3), m.group(4)) for m in FENCE.finditer(text)]


@pytest.mark.parametrize("hook", sorted(specs()))
def test_every_hook_has_a_section_with_its_exact_signature(hook):
    signature = f"{hook}({', '.join(specs()[hook])})"
    assert signature in sections(), f"docs/plugins.md needs a section '### {signature}'"


@pytest.mark.parametrize("kind", sorted(HOOKS))
def test_every_hook_section_gives_the_exact_signature_of_its_register(kind):
    hook = HOOKS[kind]
    body = sections()[f"{hook}({', '.join(specs()[hook])})"]
    signature = f"register{inspect.signature(registrar(kind, 'doc', lambda entry: None))}".replace("'", '"')
    assert f"`{signature}`" in body
    assert signature in inspect.getdoc(getattr(hookspecs, hook))  # and the hook's own docstring says it


def _annotation(value) -> str:
    return str(value).strip("'\"")


@pytest.mark.parametrize("name", ["ReportsLearnedParameters", "HasFeatureBasis", "HasFormulaGrad"])
def test_every_protocol_is_exported_and_documented_with_its_exact_signature(name):
    protocol = getattr(regfw, name)
    assert name in regfw.__all__
    (method,) = [m for m in vars(protocol) if not m.startswith("_") and callable(vars(protocol)[m])]
    parameters = list(inspect.signature(vars(protocol)[method]).parameters.values())[1:]  # without self
    arguments = ", ".join(f"{p.name}: {_annotation(p.annotation)}" for p in parameters)
    returns = _annotation(inspect.signature(vars(protocol)[method]).return_annotation)
    assert f"| `regfw.{name}`" in DOC and f"`{method}({arguments}) -> {returns}`" in DOC


def test_every_field_of_run_view_is_documented():
    assert "RunView" in regfw.__all__
    for field in dataclasses.fields(regfw.RunView):
        assert f"| `{field.name}`" in sections()["An experiment's own artifacts: RunView"], field.name


def test_no_section_documents_a_hook_that_does_not_exist():
    documented = {m.group(1) for m in re.finditer(r"^#{2,3} (register_\w+)\(", DOC, flags=re.M)}
    assert documented == set(specs())


@pytest.mark.parametrize("hook", sorted(specs()))
def test_every_hook_section_says_what_register_accepts_and_shows_a_working_example(hook):
    body = sections()[f"{hook}({', '.join(specs()[hook])})"]
    assert "`register` - callable" in body and "register(name" in body
    examples = [code for mark, _, lang, code in blocks(body) if mark == "check" and lang == "python"]
    assert len(examples) == 1, f"{hook} needs one checked example"
    tree = ast.parse(examples[0])
    assert hook in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    plugin = types.ModuleType(f"doc_example_{hook}")
    exec(compile(examples[0], f"docs/plugins.md ({hook})", "exec"), plugin.__dict__)
    report = check_plugin(plugin, include=("torch", "linear"))
    assert report.ok, str(report)
    assert len(report.components) == 1


def test_every_setting_is_documented():
    for key in TRAIN_KEYS:
        assert f"| `{key}`" in DOC, f"train key {key} is not in the train table"
    for field in dataclasses.fields(Param):
        assert f"| `{field.name}`" in DOC, f"Param field {field.name} is not in the Param table"
    for source in ("core/regfw/plugins.py", "core/regfw/cli/__init__.py"):
        for variable in set(re.findall(r"REGFW_[A-Z_]+", (ROOT / source).read_text())):
            assert variable in DOC, f"{variable} ({source}) is not documented"
    for method in ("learned_parameters()", "feature_basis(x)", "formula_grad(x, y)"):
        assert f"`{method}" in DOC


def test_every_command_the_doc_uses_exists():
    used = {m.group(1) for _, _, lang, code in blocks() if lang in ("bash", "text")
            for m in re.finditer(r"(?:^|\$ |\s)regfw ([a-z][a-z-]*)(?![\w:-])", code, flags=re.M)}
    used |= set(re.findall(r"`regfw ([a-z][a-z-]*)", DOC))
    assert {"list", "run", "check", "plugins", "new-plugin"} <= used
    assert used <= set(cli.commands), used - set(cli.commands)
    assert "--json" in [o for p in cli.commands["plugins"].params for o in p.opts]


def test_all_python_in_the_doc_compiles():
    for _, _, lang, code in blocks():
        if lang == "python":
            ast.parse(code)


def test_the_tutorial_plugin_works_as_written(tmp_path, monkeypatch):
    files = {path: code for mark, path, _, code in blocks() if mark == "file"}
    assert set(files) == {"pyproject.toml", "regfw_cubic/__init__.py", "tests/test_cubic.py"}
    for path, code in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(code)
    project = tomllib.loads(files["pyproject.toml"])
    assert project["project"]["entry-points"]["regfw"] == {"cubic": "regfw_cubic"}
    assert project["tool"]["setuptools"]["packages"] == ["regfw_cubic"]

    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("regfw_cubic", "test_cubic"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("regfw_cubic")
    assert "torch" not in module.__dict__  # the hooks' module does not import torch at its top
    registered = {e.name for e in check_plugin(module).components}
    assert registered == {"cubic", "log-cosh"}
    tests = types.ModuleType("test_cubic")
    exec(compile(files["tests/test_cubic.py"], "tests/test_cubic.py", "exec"), tests.__dict__)
    names = [n for n in vars(tests) if n.startswith("test_")]
    assert len(names) == 3
    for name in names:
        getattr(tests, name)()  # the tutorial's own tests pass
