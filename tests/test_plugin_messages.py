"""Messages a plugin author meets must be true (issue 28): the stacked path gives the reasons a
single run gives, a sweep point that fails while being built keeps its reason in the store, the
sweep line names which loss it shows, the first progress line guesses no ETA, and
learned_parameters() runs without gradients."""

from __future__ import annotations

import io

import pytest

from regfw.cli.progress import Reporter

PLUGIN = """
from regfw import hookimpl

def _nan_line():
    import torch

    class NanLine(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)

        def forward(self, x):
            return self.lin(x) * float("nan")

    return NanLine()

def _picky(width):
    import torch

    if width == 2:
        raise ValueError("width 2 is not supported by picky")
    return torch.nn.Linear(1, 1)

def _reporting():
    import torch

    class Reporting(torch.nn.Linear):
        def learned_parameters(self):
            return {"weight": float(self.weight), "bias": float(self.bias)}

    return Reporting(1, 1)

@hookimpl
def register_models(register):
    register("nan-line", _nan_line)
    register("picky", _picky, params={"width": 1})
    register("reporting", _reporting)

@hookimpl
def register_experiments(register):
    register("acme-nan", dataset="linear-1d", model="nan-line", loss="mse", optimizer="sgd", train={"epochs": 3})
    register("acme-report", dataset="linear-1d", model="reporting", loss="mse", optimizer="sgd",
             train={"epochs": 3})
"""


@pytest.fixture
def acme(fake_dist):
    return fake_dist("acme-msg", {"acme_msg": PLUGIN}, {"acme-msg": "acme_msg"})


def _children(store, experiment):
    from mlflow import MlflowClient

    from regfw.store import tags as T

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return sorted((r for r in runs if T.PARENT in r.data.tags), key=lambda r: int(r.data.tags[T.SWEEP_INDEX]))


@pytest.mark.slow
def test_a_stacked_point_gives_the_reason_a_single_run_gives(acme, invoke, store):
    from regfw.store import tags as T

    single = invoke("run", "acme-nan", "--no-track", "-q")
    assert single.exit_code == 3
    said = single.stderr.removeprefix("regfw: error: ").strip()
    assert "no finite value before it" in said and "learning rate" not in said
    swept = invoke("sweep", "acme-nan", "--vectorize", "--set", "optimizer.lr=0.01,0.02", "--tracking-uri", store)
    # NanLine is a class its factory defines on each call: a new class object per point, one definition.
    assert "vectorized: 2 points in 1 bucket" in swept.stdout and "not vectorized" not in swept.stdout
    children = _children(store, "acme-nan")
    assert [c.info.status for c in children] == ["FAILED", "FAILED"]
    assert [c.data.tags[T.FAILURE] for c in children] == [said, said]


@pytest.mark.slow
@pytest.mark.parametrize("vectorize", [False, True], ids=["one-by-one", "vectorized"])
def test_a_point_that_fails_while_built_keeps_its_reason(acme, invoke, store, vectorize):
    from regfw.store import tags as T

    result = invoke("sweep", "linear", "--model", "picky", "--set", "model.width=1,2", "--epochs", "2",
                    "--tracking-uri", store, *(["--vectorize"] if vectorize else []))
    assert result.exit_code == 1
    reason = "model 'picky' from plugin 'acme-msg' failed: ValueError: width 2 is not supported by picky"
    lines = [l for l in result.stdout.splitlines() if l.startswith("[")]
    assert "final_train_loss" in lines[0] and "FAILED" in lines[1] and reason in lines[1]
    children = _children(store, "linear")
    assert [c.info.status for c in children] == ["FINISHED", "FAILED"]
    assert children[1].data.tags[T.FAILURE] == reason and children[1].data.params["model.width"] == "2"


def test_the_first_progress_line_guesses_no_eta():
    stream = io.StringIO()
    reporter = Reporter("lines", stream)
    reporter.start("linear", 10)
    for epoch in range(1, 11):
        reporter.update(epoch, {"train_loss": 1.0 / epoch})
    first, *rest = stream.getvalue().splitlines()
    assert first == "linear epoch 1/10  train_loss 1"  # the warm-up epoch: no rate to tell yet
    assert all(" ep/s" in line or " s/ep" in line for line in rest) and "ETA" in rest[0] and "ETA" not in rest[-1]


@pytest.mark.parametrize("command", ["run", "check"])
def test_learned_parameters_run_without_gradients(acme, regfw_script, command):
    args = ["run", "acme-report", "--no-track"] if command == "run" else ["check", "acme-msg"]
    result = regfw_script(*args, env={"PYTHONPATH": str(acme)})
    assert "learned: " in result.stdout if command == "run" else "acme-report" in result.stdout
    assert "requires_grad" not in result.stderr, result.stderr


def test_stacking_compares_class_definitions_not_class_objects():
    import torch

    from regfw.vectorize.stack import class_reason

    def make(scale):
        class Scaled(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(1, 1)

            def forward(self, x):
                return self.lin(x) * scale

        return Scaled()

    assert type(make(2.0)) is not type(make(2.0)) and class_reason(make(2.0), make(2.0)) is None
    # The same code closing over another value is another forward: the reason says which module.
    assert class_reason(make(2.0), make(3.0)).startswith("the model is of different classes (")
    wrapped = torch.nn.Sequential(torch.nn.Linear(1, 1))
    assert class_reason(wrapped, torch.nn.Sequential(torch.nn.Identity())).startswith("module '0' is of different")


@pytest.mark.parametrize("how", [[], ["--vectorize"], ["--jobs", "2"], ["run"]], ids=["sweep", "vectorized", "jobs", "run-sweep"])
def test_a_sweep_without_tracking_reports_in_the_terminal_only(acme, invoke, tmp_path, monkeypatch, how):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # where the default store (./mlruns) would appear
    command = ["run", "linear", "--sweep"] if how == ["run"] else ["sweep", "linear", *how]
    result = invoke(*command, "--no-track", "--model", "picky", "--set", "model.width=1,2", "--epochs", "2")
    assert result.exit_code == 1 and result.stderr == ("regfw: error: 1 of 2 sweep points failed: model 'picky' from "
                                                       "plugin 'acme-msg' failed: ValueError: width 2 is not supported "
                                                       "by picky\n")
    lines = sorted(l for l in result.stdout.splitlines() if l.startswith("["))  # --jobs: in the order they end
    assert "FINISHED" in lines[0] and "final_train_loss" in lines[0]
    assert "FAILED" in lines[1] and "width 2 is not supported by picky" in lines[1]
    assert "not recorded" in result.stdout and "parent run" not in result.stdout
    assert list(work.iterdir()) == []


def test_a_sweep_without_tracking_refuses_a_place_to_record(invoke):
    result = invoke("sweep", "linear", "--no-track", "--tracking-uri", "sqlite:///x.db", "--set", "optimizer.lr=0.1,0.2")
    assert result.exit_code == 1 and result.stderr == (
        "regfw: error: --no-track records nothing; --tracking-uri says where to record: drop one\n")
