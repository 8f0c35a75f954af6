"""What a user reads: run names, metric names in MLflow's chart sections, numbers without float noise."""

import pytest

from regfw.config import parse_set, resolve
from regfw.naming import default_run_name
from regfw.plugins import load_plugins
from regfw.recorder import float32_value
from regfw.results import excess, metric_rows, summarise
from regfw.recorder import History
from regfw.store import keys
from regfw.sweep.grid import build_grid


@pytest.fixture
def registry():
    return load_plugins().registry


def _name(registry, experiment, sets=(), swaps=None, flags=None):
    return default_run_name(registry, resolve(registry, experiment, sets=parse_set(sets), swaps=swaps, flags=flags))


def test_a_run_is_named_by_what_the_user_changed_only(registry):
    assert _name(registry, "linear") == "linear"
    assert _name(registry, "linear", ["optimizer.lr=0.05"], flags={"train.epochs": 7}) == "linear lr=0.05 epochs=7"
    # A swapped-in optimizer is compared with its own defaults: adam's betas and lr stay out.
    name = _name(registry, "mnist", ["model.hidden=[256,128]"], swaps={"dataset": "fashion-mnist", "optimizer": "adam"})
    assert name.split()[0] == "mnist"
    parts = name.split()[1:]
    assert set(parts) == {"optimizer=adam", "dataset=fashion-mnist", "hidden=256,128"}
    assert [len(p) for p in parts] == sorted(len(p) for p in parts)  # shortest first


def test_sweep_points_name_their_axes_and_differ(registry):
    default_lr = resolve(registry, "linear").optimizer.params["lr"]
    grid = build_grid(registry, "linear", sets=[f"optimizer.lr={default_lr},{default_lr / 2}"], seeds="0,1")
    names = [p.run_name for p in grid.points]
    assert len(set(names)) == len(names)
    at_defaults = next(p for p in grid.points if p.config.optimizer.params["lr"] == default_lr and p.config.seed == 0)
    assert at_defaults.run_name != "linear"  # not named like the plain run
    # Named by what tells it from its siblings only, in the sweep's order: the parent says the rest.
    assert at_defaults.run_name == f"lr={default_lr} seed=0"


def test_sweep_points_leave_out_what_every_sibling_shares(registry):
    grid = build_grid(registry, "quadratic-linear", seeds="0-7", flags={"train.epochs": 5000})
    assert [p.run_name for p in grid.points] == [f"seed={s}" for s in range(8)]
    grid = build_grid(registry, "linear", sets=["optimizer=sgd,adam", "optimizer.lr=0.05"])
    assert [p.run_name for p in grid.points] == ["optimizer=sgd", "optimizer=adam"]
    # One point has no sibling: it keeps the name a run would have.
    assert build_grid(registry, "linear", sets=["optimizer.lr=0.05"]).points[0].run_name == "linear lr=0.05"


def test_metric_keys_put_curves_before_summaries_in_mlflow_sections():
    names = ["train_loss", "test_accuracy", "final_train_loss", "best_test_accuracy", "train_seconds",
             "optimum_loss", "excess_loss", "learned.weight.0"]
    stored = [keys.stored(n) for n in names]
    assert all("/" in k for k in stored)
    sections = [k.split("/")[0] for k in stored]
    curve_sections = {s for n, s in zip(names, sections) if n in ("train_loss", "test_accuracy")}
    summary_sections = set(sections) - curve_sections
    # MLflow orders sections alphabetically: the curves' must come first.
    assert max(curve_sections) < min(summary_sections)
    assert [keys.plain(k) for k in stored] == names
    assert keys.plain("final_train_loss") == "final_train_loss"  # runs written before sections existed
    assert keys.filter_string("metrics.final_train_loss < 0.1 and params.train.metrics = 'x'") == \
        "metrics.`summary/final_train_loss` < 0.1 and params.train.metrics = 'x'"


def test_float32_values_are_stored_with_the_digits_they_have():
    import torch

    value = torch.tensor(0.8877, dtype=torch.float32).item()
    assert value != 0.8877 and float32_value(value) == 0.8877
    assert float32_value(float("inf")) == float("inf")
    # An excess over the optimum is no more precise than the float32 loss it comes from.
    final = float32_value(torch.tensor(0.0123456789, dtype=torch.float32).item())
    assert excess(final, final - 1.4213e-11) == 0.0
    assert excess(final, final - 3.2e-6) == pytest.approx(3.2e-6, rel=1e-3)

    model = torch.nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(0.1)
    history = History()
    history.curves["train_loss"] = [(1, 0.5)]
    summary, learned = summarise(history, 1.23456789, model)
    assert learned["weight"] == 0.1 and summary["train_seconds"] == 1.235
    assert ("learned.weight", 0.1, 3) in metric_rows(summary, learned, 3)


@pytest.mark.slow
def test_building_an_optimizer_does_not_import_torch_compile():
    """regfw.lean: a run whose optimizer never steps through torch.optim's wrapper (the fast path)
    must not pay for importing torch._dynamo; a later import still works."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from regfw.build import build_state\n"
        "from regfw.config import resolve\n"
        "from regfw.plugins import load_plugins\n"
        "registry = load_plugins().registry\n"
        "state = build_state(resolve(registry, 'linear'), registry, torch.device('cpu'))\n"
        "state.optimizer.zero_grad(); state.optimizer.load_state_dict(state.optimizer.state_dict())\n"
        "assert 'torch._dynamo' not in sys.modules, 'imported'\n"
        "import torch._dynamo\n"
        "torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1).step()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
