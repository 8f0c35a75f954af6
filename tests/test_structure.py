"""The shape of the core, checked: no import circles, no core module reaching into the CLI, no
module importing another's private names, small files. Read from the source (AST), every import
counted, including the ones inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core" / "regfw"
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` for every ``import``/``from ... import`` of a regfw module in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names if alias.name.startswith("regfw")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("regfw") and node.level == 0:
            names = [alias.name for alias in node.names]
            # `from regfw.runs import stats` imports the module regfw.runs.stats
            submodules = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in MODULES]
            out.append((node.module, [n for n in names if f"{node.module}.{n}" not in MODULES]))
            out += [(m, []) for m in submodules]
    return out


def graph() -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        edges[name] = {target for target, _ in imports(path) if target in MODULES and target != name}
    return edges


def packages_of(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_the_import_graph_has_no_circles():
    edges = graph()
    # A package's __init__ re-exporting its own submodules is not a circle through the package.
    for name in edges:
        edges[name] = {t for t in edges[name] if t not in packages_of(name)}
    state, path, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_only_the_cli_imports_the_cli():
    entry = ("regfw.cli", "regfw.__main__")  # `python -m regfw` is the CLI's own door
    offenders = [f"{name} imports {target}" for name, path in MODULES.items() if not name.startswith(entry)
                 for target, _ in imports(path) if target.startswith("regfw.cli")]
    assert not offenders, offenders


def test_no_module_imports_another_modules_private_names():
    offenders = [f"{name}: from {target} import {n}" for name, path in MODULES.items()
                 for target, names in imports(path) for n in names if n.startswith("_") and not n.startswith("__") and target != name]
    assert not offenders, offenders


@pytest.mark.parametrize("name", sorted(MODULES))
def test_core_files_stay_small(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by job"
