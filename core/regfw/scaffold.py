"""``regfw new-plugin NAME``: write a plugin package that installs, passes its own test and shows up.

The skeleton has one example per hook, each small enough to read in a minute and replace:
a dataset, a model, a loss, an optimizer and an experiment composing the four. torch is imported
inside the factories (``components.py``), so installing the plugin costs ``regfw list`` nothing.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from string import Template

from regfw.errors import RegfwError

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
MAX_NAME = 40

PYPROJECT = Template('''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A regfw plugin: $name"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["regfw"]

[project.optional-dependencies]
test = ["pytest"]

# This is what makes regfw find the plugin: entry-point group "regfw", name = the plugin's name.
[project.entry-points.regfw]
$name = "$package"

[tool.setuptools]
packages = ["$package"]

[tool.pytest.ini_options]
testpaths = ["tests"]
''')

INIT = Template('''\
"""$dist: a regfw plugin.

One example per hook. Keep torch out of this module: regfw imports it to list components, so
the heavy code lives in components.py and is imported inside the factories.
"""

from regfw import Param, hookimpl


def make_data(generator, n_samples, slope, intercept, noise):
    """Dataset factory: regfw passes a seeded CPU torch.Generator, returns regfw.data.Data."""
    import torch

    from regfw.data import Data

    x = torch.rand(n_samples, 1, generator=generator) * 4 - 2
    y = slope * x + intercept + noise * torch.randn(n_samples, 1, generator=generator)
    split = n_samples * 3 // 4
    return Data(x[:split], y[:split], x[split:], y[split:], task="regression")


def make_model(in_features, out_features):
    from $package.components import Affine

    return Affine(in_features, out_features)


def make_loss(delta):
    from $package.components import LogCosh

    return LogCosh(delta)


def make_optimizer(parameters, lr, momentum):
    from $package.components import HeavyBall

    return HeavyBall(parameters, lr=lr, momentum=momentum)


@hookimpl
def register_datasets(register):
    register("$name-line", make_data, description="y = slope*x + intercept + N(0, noise), x in [-2, 2)",
             params={"n_samples": Param(200, min=4, help="points, 3/4 train and 1/4 test"),
                     "slope": 2.0, "intercept": -1.0, "noise": Param(0.1, min=0.0)},
             dims=lambda params: {"in_features": 1, "out_features": 1})


@hookimpl
def register_models(register):
    register("$name-affine", make_model, description="y = x W + b, sizes from the dataset",
             params={"in_features": Param(None, type=int, min=1, help="default: from the dataset"),
                     "out_features": Param(None, type=int, min=1, help="default: from the dataset")})


@hookimpl
def register_losses(register):
    register("$name-logcosh", make_loss, description="delta^2 * mean(log cosh(error / delta))",
             params={"delta": Param(1.0, gt=0.0, help="scale where it turns from quadratic to linear")})


@hookimpl
def register_optimizers(register):
    register("$name-heavyball", make_optimizer, description="SGD with heavy-ball momentum",
             params={"lr": Param(0.05, gt=0.0), "momentum": Param(0.9, min=0.0)})


@hookimpl
def register_experiments(register):
    register("$name", description="Fit a noisy line with the $name components",
             dataset="$name-line", model="$name-affine", loss="$name-logcosh",
             optimizer=("$name-heavyball", {"lr": 0.05}),
             train={"epochs": 200, "batch_size": "full"})
''')

COMPONENTS = Template('''\
"""The torch code of $dist, imported only when a run builds a component."""

import math

import torch
from torch import nn


class Affine(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        if in_features is None or out_features is None:
            raise ValueError("Affine needs in_features and out_features (set model.in_features=...)")
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.linear(x)

    def learned_parameters(self):
        """Optional: the numbers regfw logs as learned.<name> and prints after a run."""
        if self.linear.weight.numel() > 4:
            return {}
        values = {f"w{i}": w for i, w in enumerate(self.linear.weight.flatten().tolist())}
        return values | {f"b{i}": b for i, b in enumerate(self.linear.bias.tolist())}


class LogCosh(nn.Module):
    def __init__(self, delta=1.0):
        super().__init__()
        self.delta = delta

    def forward(self, prediction, target):
        error = (prediction - target) / self.delta
        # log(cosh(e)) computed without overflow for large |e|
        value = error.abs() + nn.functional.softplus(-2 * error.abs()) - math.log(2.0)
        return self.delta**2 * value.mean()


class HeavyBall(torch.optim.Optimizer):
    def __init__(self, params, lr=0.05, momentum=0.9):
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():  # the closure recomputes the loss and its gradients
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                velocity = state["velocity"]
                velocity.mul_(group["momentum"]).add_(p.grad)
                p.add_(velocity, alpha=-group["lr"])
        return loss
''')

TEST = Template('''\
"""The plugin's own tests, with regfw.testing: conformance of every component, and a real run."""

import $package
from regfw.testing import check_plugin, plugins_for, run_experiment


def test_registers_one_component_of_each_kind():
    registry = plugins_for($package, include=()).registry
    for kind in ("dataset", "model", "loss", "optimizer", "experiment"):
        assert [e.name for e in registry.all(kind)], f"no {kind} registered"


def test_every_component_conforms():
    # builds with defaults, finite loss after a step, same seed -> same result, device, state_dict
    check_plugin($package).assert_ok()


def test_experiment_learns_the_line():
    # track=False keeps the test fast; store=tmp_path records the run in an MLflow store you can read back
    result = run_experiment("$name", $package, epochs=150, track=False)
    losses = result.curve("train_loss")
    assert losses[-1] < losses[0] / 10
    assert abs(result.learned["w0"] - 2.0) < 0.2 and abs(result.learned["b0"] + 1.0) < 0.2
''')

README = Template('''\
# $dist

A [regfw](https://pypi.org/project/regfw/) plugin. It registers:

$table

## Install and try

    pip install -e .
    regfw list                    # the components above, plugin '$name'
    regfw run $name
    regfw run linear --optimizer $name-heavyball   # mix with other plugins' components

## Test

With the environment regfw is installed in active (the one `pip install -e .` above went into,
e.g. `source /path/to/that-env/bin/activate`; or call that environment's `bin/pytest` by its path):

    pytest                        # uses regfw.testing
    regfw check $name             # the same conformance check, one line per component

## Publish

    python -m build && twine upload dist/*

Rename the components before publishing if they are generic: names are global across installed
plugins. A name another plugin also registers still works, as `$name:NAME`, and your experiment
keeps meaning your own component; but the plain name typed on the command line is then ambiguous
(an error that names both plugins and says how to choose).
''')


def component_table(name: str) -> str:
    """The README's table of what the plugin registers, its columns as wide as their cells."""
    rows = [("kind", "name")] + [(kind, f"`{Template(t).substitute(name=name)}`") for kind, t in COMPONENT_NAMES.items()]
    rows = [rows[0]] + sorted(rows[1:], key=lambda r: r[0] != "experiment")  # the experiment first
    widths = [max(len(r[i]) for r in rows) for i in (0, 1)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows[1:]])


def names_for(name: str) -> dict[str, str]:
    if name.startswith("regfw-"):
        name = name[len("regfw-"):]
    if len(name) > MAX_NAME:  # it names a folder and a package: keep it a name
        raise RegfwError(f"plugin name is {len(name)} characters; give at most {MAX_NAME}")
    if not NAME_RE.match(name):
        raise RegfwError(f"plugin name must be lowercase letters, digits and dashes, starting with a letter "
                         f"(e.g. 'my-plugin'), got '{name}'")
    return {"name": name, "dist": f"regfw-{name}", "package": "regfw_" + name.replace("-", "_")}


COMPONENT_NAMES = {"dataset": "$name-line", "model": "$name-affine", "loss": "$name-logcosh",
                   "optimizer": "$name-heavyball", "experiment": "$name"}


def check_component_names(name: str) -> None:
    """The scaffold's components must not clash with installed ones: its own tests would pass,
    then the user's `regfw run` would meet the clash."""
    from regfw.plugins import get_plugins

    registry = get_plugins().registry
    for kind, template in COMPONENT_NAMES.items():
        component = Template(template).substitute(name=name)
        if component in registry.names(kind):
            owner = registry.get(kind, component).plugin
            raise RegfwError(f"the new plugin's {kind} '{component}' is already registered by plugin '{owner}'; "
                             "choose another plugin name")


def write_plugin(name: str, directory: str | Path = ".") -> Path:
    """Create ``directory/NAME/`` holding the plugin package; return that folder."""
    values = names_for(name)
    taken = {ep.name: ep for ep in metadata.entry_points(group="regfw")}
    if values["name"] in taken:
        dist = getattr(taken[values["name"]], "dist", None)
        owner = f" (by {dist.name})" if dist is not None else ""
        raise RegfwError(f"a plugin called '{values['name']}' is already installed{owner}; choose another name")
    check_component_names(values["name"])
    from regfw.files import check_path_length

    folder = check_path_length(Path(directory) / values["name"], "--dir")  # exists() itself would raise
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise RegfwError(f"{folder} already exists and is not empty")
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{values['package']}/__init__.py": INIT,
        f"{values['package']}/components.py": COMPONENTS,
        f"tests/test_{values['package']}.py": TEST,
    }
    try:
        for relative, template in files.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(template.substitute(values, table=component_table(values["name"])), encoding="utf-8")
    except OSError as exc:
        raise RegfwError(f"cannot write {folder}: {exc.strerror or exc}") from None
    return folder
