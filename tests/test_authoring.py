"""`regfw check` and regfw.testing's conformance check: passes on what works, names what does not."""

from __future__ import annotations

import types
from importlib import metadata

import pytest

from regfw.errors import RegfwError
from regfw.testing import check_plugin

BUNDLED = sorted(ep.name for ep in metadata.entry_points(group="regfw") if ep.dist and ep.dist.name == "regfw")


def module(name: str, source: str) -> types.ModuleType:
    plugin = types.ModuleType(name)
    exec(source, plugin.__dict__)
    return plugin


NAN_MODEL = """
from regfw import Param, hookimpl

def make(in_features, out_features):
    import torch

    class NanNet(torch.nn.Linear):
        def forward(self, x):
            return super().forward(x) * float("nan")

    return NanNet(in_features, out_features)

@hookimpl
def register_models(register):
    register("nan-net", make, description="returns NaN",
             params={"in_features": Param(None, type=int), "out_features": Param(None, type=int)})
"""


@pytest.mark.slow
@pytest.mark.parametrize("plugin", BUNDLED)
def test_check_passes_on_every_bundled_plugin(invoke, plugin):
    from regfw.plugins import load_plugins

    registered = [e for kind in ("experiment", "dataset", "model", "loss", "optimizer")
                  for e in load_plugins().registry.all(kind) if e.plugin == plugin]
    result = invoke("check", plugin)
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # one line per component, each ok (or skipped: data that cannot be had here, with the reason)
    components = [l for l in lines if l.split()[0] in ("ok", "skip", "FAIL")]
    assert len(components) == len(registered) > 0
    assert {(l.split()[1], l.split()[2]) for l in components} == {(e.kind, e.name) for e in registered}
    assert not any(l.startswith("FAIL") for l in lines)
    assert all("cannot be built here" in l for l in components if l.startswith("skip"))
    assert lines[-1].startswith(f"{sum(l.startswith('ok') for l in components)} passed, 0 failed")


@pytest.mark.slow
def test_check_fails_on_a_model_that_returns_nan(fake_dist, regfw_script):
    site = fake_dist("acme-nan", {"acme_nan": NAN_MODEL}, {"acme-nan": "acme_nan"})
    result = regfw_script("check", "acme-nan", env={"PYTHONPATH": str(site)})
    assert result.returncode == 1
    line = next(l for l in result.stdout.splitlines() if "nan-net" in l)
    assert line.startswith("FAIL") and "model" in line and "non-finite train_loss (nan)" in line
    assert result.stderr == "regfw: error: check failed: 0 passed, 1 failed\n"


def test_check_names_every_failing_component_and_keeps_going(fake_dist, invoke):
    source = NAN_MODEL + """
@hookimpl
def register_losses(register):
    register("fine-l1", lambda: __import__("torch").nn.L1Loss(), description="fine")
"""
    fake_dist("acme-mixed", {"acme_mixed": source}, {"acme-mixed": "acme_mixed"})
    result = invoke("check", "acme-mixed")
    assert result.exit_code == 1
    assert "1 passed, 1 failed" in result.stderr
    assert next(l for l in result.stdout.splitlines() if "fine-l1" in l).startswith("ok")


# Each plugin breaks one promise; the check must fail on exactly that one and say so.
BROKEN = {
    "deterministic": """
from regfw import hookimpl
import random

def make():
    import torch
    model = torch.nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.fill_(random.SystemRandom().random())  # ignores the seed
    return model

@hookimpl
def register_models(register):
    register("moody", make)
""",
    "state_dict": """
from regfw import hookimpl

class Opaque:
    pass

def make():
    import torch

    class Net(torch.nn.Linear):
        def get_extra_state(self):
            return Opaque()  # not loadable with torch.load(weights_only=True)

        def set_extra_state(self, state):
            pass

    return Net(3, 1)

@hookimpl
def register_models(register):
    register("opaque", make)
""",
    "state_dict (optimizer)": """
from regfw import hookimpl

def make(parameters, lr):
    import torch

    class Forgetful(torch.optim.SGD):
        # momentum kept outside self.state: lost by state_dict()/load_state_dict()
        velocity = None

        @torch.no_grad()
        def step(self, closure=None):
            params = [p for g in self.param_groups for p in g["params"]]
            if self.velocity is None:
                self.velocity = [torch.zeros_like(p) for p in params]
            for p, v in zip(params, self.velocity):
                v.mul_(0.9).add_(p.grad)
                p.add_(v, alpha=-self.param_groups[0]["lr"])

    return Forgetful(parameters, lr=lr)

@hookimpl
def register_optimizers(register):
    register("forgetful", make, params={"lr": 0.1})
""",
    "build": """
from regfw import hookimpl

def make(generator):
    import torch
    return torch.zeros(4, 1), torch.zeros(4, 1)

@hookimpl
def register_datasets(register):
    register("tuple-data", make)
""",
    "finite loss": """
from regfw import hookimpl

def make():
    import torch
    return torch.nn.MSELoss(reduction="none")

@hookimpl
def register_losses(register):
    register("per-sample", make)
""",
    "formula_grad": """
from regfw import hookimpl

def data(generator):
    import torch
    from regfw.data import Data
    x = torch.linspace(0, 1, 8).unsqueeze(1)
    return Data(x, 2 * x)

def model():
    import torch

    class Half(torch.nn.Linear):
        def formula_grad(self, x, y):
            error = self(x) - y
            self.weight.grad = (error * x).mean().reshape(1, 1)  # half the MSE gradient
            self.bias.grad = error.mean().reshape(1)

    return Half(1, 1)

@hookimpl
def register_datasets(register):
    register("ramp", data)

@hookimpl
def register_models(register):
    register("half-grad", model)

@hookimpl
def register_experiments(register):
    register("halved", dataset="ramp", model="half-grad", loss="mse", optimizer="sgd", train={"grad": "formula"})
""",
}


@pytest.mark.parametrize("check", sorted(BROKEN))
def test_each_check_can_fail(check):
    report = check_plugin(module("broken_" + check.replace(" ", "_").strip("()"), BROKEN[check]))
    assert not report.ok
    failure = report.failures[0]
    assert failure.reason.startswith(check.split(" (")[0] + ":"), failure.reason
    with pytest.raises(AssertionError, match=failure.name):
        report.assert_ok()


def test_missing_data_skips_and_the_rest_is_still_checked():
    source = """
from regfw import Param, hookimpl
from regfw.errors import RegfwError

def data(generator, root):
    raise RegfwError(f"files not found in {root}; put them there")

def model(in_features, out_features):
    import torch
    return torch.nn.Linear(in_features, out_features)

@hookimpl
def register_datasets(register):
    register("offline", data, params={"root": "nowhere"}, dims=lambda p: {"in_features": 7, "out_features": 2})

@hookimpl
def register_models(register):
    register("wide", model, params={"in_features": Param(None, type=int), "out_features": Param(None, type=int)})

@hookimpl
def register_experiments(register):
    register("offline-exp", dataset="offline", model="wide", loss="mse", optimizer="sgd")
"""
    report = check_plugin(module("offline_plugin", source))
    status = {c.name: c for c in report.components}
    assert report.ok
    assert status["offline"].status == status["offline-exp"].status == "skip"
    assert "files not found in nowhere" in status["offline"].reason
    # the model met synthetic data of the dataset's declared sizes instead
    assert status["wide"].status == "ok"


def test_check_unknown_or_broken_plugin(fake_dist, invoke):
    unknown = invoke("check", "tourch")
    assert unknown.exit_code != 0 and unknown.stdout == ""
    assert unknown.stderr.startswith("regfw: error: unknown plugin 'tourch' (did you mean 'torch'?)")
    fake_dist("acme-broken", {"acme_broken": "raise ImportError('needs libfoo')"}, {"acme-broken": "acme_broken"})
    broken = invoke("check", "acme-broken")
    assert broken.exit_code == 1
    assert "FAIL" in broken.stdout and "ImportError: needs libfoo" in broken.stdout
    assert broken.stderr == "regfw: error: check failed: 0 passed, 1 failed\n"  # not "-1 passed"
    disabled = invoke("check", "linear", env={"REGFW_DISABLE_PLUGINS": "linear"})
    assert disabled.exit_code != 0 and "disabled" in disabled.stderr


def test_check_rejects_a_bad_device(invoke):
    result = invoke("check", "torch", "--device", "gpu")
    assert result.exit_code != 0 and result.stderr.count("\n") == 1 and "device must be" in result.stderr


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_check_rejects_a_seed_out_of_range_in_one_line(invoke, seed):
    result = invoke("check", "torch", "--seed", seed)
    assert result.exit_code != 0 and result.stdout == ""  # no component is checked, none blamed
    assert result.stderr.count("\n") == 1 and "--seed" in result.stderr and seed in result.stderr


def test_check_plugin_refuses_a_negative_seed_before_checking():
    with pytest.raises(RegfwError, match="seed must be an integer from 0"):
        check_plugin("torch", seed=-1)


@pytest.mark.cuda
def test_check_on_cuda_places_everything_on_the_gpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    assert check_plugin("torch", device="cuda").ok
    stuck = """
from regfw import hookimpl

def make():
    import torch

    class Stuck(torch.nn.Linear):
        def _apply(self, fn, recurse=True):
            return self  # ignores .to(device)

    return Stuck(3, 1)

@hookimpl
def register_models(register):
    register("stuck", make)
"""
    report = check_plugin(module("stuck_plugin", stuck), device="cuda")
    assert not report.ok and report.failures[0].name == "stuck"


WRONG_TYPES = """
from regfw import Param, hookimpl

@hookimpl
def register_datasets(register):
    register("dict-data", lambda generator: {"x": 1})

@hookimpl
def register_models(register):
    register("dict-model", lambda in_features, out_features: {"weight": 1.0},
             params={"in_features": Param(None, type=int, min=1), "out_features": Param(None, type=int, min=1)})

@hookimpl
def register_losses(register):
    register("int-loss", lambda: 3)

@hookimpl
def register_optimizers(register):
    register("dict-opt", lambda parameters, lr: {}, params={"lr": 0.1})
"""


def test_check_says_what_run_says_of_a_factory_returning_the_wrong_type(fake_dist, invoke):
    fake_dist("acme-wrong", {"acme_wrong": WRONG_TYPES}, {"acme-wrong": "acme_wrong"})
    check = invoke("check", "acme-wrong")
    assert check.exit_code == 1 and "unexpected" not in check.stdout + check.stderr
    lines = {l.split()[1]: l for l in check.stdout.splitlines() if l.startswith("FAIL")}
    for kind, name in (("dataset", "dict-data"), ("model", "dict-model"), ("loss", "int-loss"),
                       ("optimizer", "dict-opt")):
        run = invoke("run", "linear", "--no-track", f"--{kind}", name)
        assert run.exit_code == 1 and run.stderr.startswith("regfw: error: ") and run.stderr.count("\n") == 1
        said = run.stderr.removeprefix("regfw: error: ").strip()
        assert f"returned {'int' if kind == 'loss' else 'dict'}, not" in said
        assert f"FAIL  {kind:<10} {name:<20} build: {said}" in lines[kind]
