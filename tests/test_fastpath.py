"""The fast SGD step gives the same parameters and losses as the plain eager step (to 1e-6),
is taken only where it applies, and the engine really uses it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from regfw import fastpath
from regfw.config import resolve
from regfw.engine import train
from regfw.recorder import Recorder
from regfw.state import RunState
from regfw.plugins import load_plugins

TOL = dict(rtol=1e-6, atol=1e-6)


@pytest.fixture(autouse=True)
def _switches_unset(monkeypatch):
    """The caller's REGFW_FASTPATH / REGFW_CUDA_GRAPHS must not decide what these tests see."""
    monkeypatch.delenv(fastpath.ENV_DISABLE, raising=False)
    monkeypatch.delenv(fastpath.ENV_GRAPHS, raising=False)


class Quadratic(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (nn.Parameter(torch.randn(1, 1)) for _ in range(3))

    def forward(self, x):
        return self.a * x ** 2 + self.b * x + self.c


class Product(nn.Module):
    def __init__(self):
        super().__init__()
        self.one, self.two = nn.Linear(1, 1), nn.Linear(1, 1)

    def forward(self, x):
        return self.one(x) * self.two(x)


class WithUnused(nn.Linear):
    def __init__(self):
        super().__init__(1, 1)
        self.spare = nn.Parameter(torch.ones(3))  # never used in forward: SGD leaves it alone


def quadratic_data():
    g = torch.Generator().manual_seed(1)
    x = torch.linspace(-2, 12, 100).unsqueeze(1)
    return x, (x - 4) * (x - 8) + torch.randn(x.shape, generator=g)


def linear_data():
    g = torch.Generator().manual_seed(2)
    x = torch.linspace(-1, 1, 100).unsqueeze(1)
    return x, 3 * x + 10 + torch.rand(x.shape, generator=g)


def mlp_data():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 20, generator=g)
    return x, x.sum(dim=1, keepdim=True) * 0.1 + 0.01 * torch.randn(200, 1, generator=g)


CASES = {  # model, data, lr, batch (None: full), loss
    "linear": (lambda: nn.Linear(1, 1), linear_data, 0.01, None, nn.MSELoss),
    "quadratic": (Quadratic, quadratic_data, 2e-5, None, nn.MSELoss),
    "product": (Product, quadratic_data, 2e-5, None, nn.MSELoss),
    "product-sum": (Product, quadratic_data, 2e-7, None, lambda: nn.MSELoss(reduction="sum")),
    "mlp-minibatch": (lambda: nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 1)), mlp_data, 0.05, 25,
                      nn.MSELoss),
    "mlp-l1": (lambda: nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 1)), mlp_data, 0.05, 25, nn.L1Loss),
}


def eager_step(model, loss_fn, optimizer):
    def step(xb, yb):
        out = model(xb)
        loss = loss_fn(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return out, loss

    return step


def run_steps(make_model, data, lr, batch, fast: bool, steps: int = 150, lr_change=None, make_loss=nn.MSELoss):
    torch.manual_seed(0)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = make_loss()
    step = fastpath.sgd_step(model, loss_fn, optimizer) if fast else eager_step(model, loss_fn, optimizer)
    assert step is not None
    x, y = data
    batch = batch or len(x)
    losses = []
    for i in range(steps):
        if lr_change and i == lr_change[0]:
            optimizer.param_groups[0]["lr"] = lr_change[1]
        start = (i * batch) % len(x)
        _, loss = step(x[start:start + batch], y[start:start + batch])
        losses.append(loss.detach())
    return model, torch.stack(losses), step


@pytest.mark.parametrize("case", CASES)
def test_fast_step_matches_the_eager_step(case):
    make_model, make_data, lr, batch, make_loss = CASES[case]
    data = make_data()
    eager_model, eager_losses, _ = run_steps(make_model, data, lr, batch, fast=False, make_loss=make_loss)
    fast_model, fast_losses, step = run_steps(make_model, data, lr, batch, fast=True, make_loss=make_loss)
    assert step.fast and step.engine is not None  # the hot path ran, not only the checked first step
    assert (step.kernel is not None) == isinstance(make_loss(), nn.MSELoss)
    torch.testing.assert_close(fast_losses, eager_losses, **TOL)
    for (name, p), q in zip(eager_model.named_parameters(), fast_model.parameters()):
        torch.testing.assert_close(q, p, **TOL, msg=name)
    assert eager_losses[-1] < eager_losses[0]  # it trained: the comparison is not between two idle models
    assert all(p.grad is None for p in fast_model.parameters())  # .grad was never touched


def test_a_target_of_another_shape_keeps_mse_loss_broadcasting():
    x, y = linear_data()
    flat = (x, y.squeeze(1))  # (100, 1) output against (100,) targets: MSELoss broadcasts (and warns)
    with pytest.warns(UserWarning):
        eager_model, eager_losses, _ = run_steps(lambda: nn.Linear(1, 1), flat, 0.01, None, fast=False, steps=30)
    with pytest.warns(UserWarning):
        fast_model, fast_losses, _ = run_steps(lambda: nn.Linear(1, 1), flat, 0.01, None, fast=True, steps=30)
    torch.testing.assert_close(fast_losses, eager_losses, **TOL)
    torch.testing.assert_close(fast_model.weight, eager_model.weight, **TOL)


def test_a_learning_rate_change_is_honoured():
    data = quadratic_data()
    eager_model, eager_losses, _ = run_steps(Quadratic, data, 2e-5, None, fast=False, lr_change=(50, 1e-4))
    fast_model, fast_losses, _ = run_steps(Quadratic, data, 2e-5, None, fast=True, lr_change=(50, 1e-4))
    torch.testing.assert_close(fast_losses, eager_losses, **TOL)
    for p, q in zip(eager_model.parameters(), fast_model.parameters()):
        torch.testing.assert_close(q, p, **TOL)


def test_a_parameter_without_gradient_is_left_alone_as_sgd_does():
    data = linear_data()
    eager_model, eager_losses, _ = run_steps(WithUnused, data, 0.01, None, fast=False, steps=40)
    fast_model, fast_losses, step = run_steps(WithUnused, data, 0.01, None, fast=True, steps=40)
    assert not step.fast  # stays on the checked per-parameter path
    torch.testing.assert_close(fast_losses, eager_losses, **TOL)
    torch.testing.assert_close(fast_model.spare, torch.ones(3))
    torch.testing.assert_close(fast_model.weight, eager_model.weight, **TOL)


class MySGD(torch.optim.SGD):
    pass


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=1e-3),
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: torch.optim.SGD(ps, lr=0.1, maximize=True),
    lambda ps: torch.optim.SGD(ps, lr=torch.tensor(0.1)),
    lambda ps: torch.optim.Adam(ps, lr=0.1),
    lambda ps: MySGD(ps, lr=0.1),
], ids=["momentum", "weight-decay", "nesterov", "maximize", "tensor-lr", "adam", "subclass"])
def test_anything_but_plain_sgd_keeps_the_normal_path(make):
    model = nn.Linear(1, 1)
    assert fastpath.sgd_step(model, nn.MSELoss(), make(model.parameters())) is None


def test_hooks_keep_the_normal_path():
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = optimizer.register_step_post_hook(lambda *a: None)
    assert fastpath.sgd_step(model, nn.MSELoss(), optimizer) is None
    handle.remove()
    assert fastpath.sgd_step(model, nn.MSELoss(), optimizer) is not None
    model.weight.register_hook(lambda g: g * 2)
    assert fastpath.sgd_step(model, nn.MSELoss(), optimizer) is None


def test_the_environment_switch_turns_it_off(monkeypatch):
    model = nn.Linear(1, 1)
    monkeypatch.setenv(fastpath.ENV_DISABLE, "0")
    assert fastpath.sgd_step(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1)) is None


# -- the engine, over every registered plain-SGD experiment ---------------------------------------

def _plain_sgd_experiments():
    registry = load_plugins().registry
    names = []
    for entry in registry.all("experiment"):
        config = resolve(registry, entry.name)
        opt = config.optimizer
        if (config.train["grad"] == "autograd" and opt.name == "sgd" and not opt.params.get("momentum")
                and not opt.params.get("weight_decay")):
            names.append(entry.name)
    return sorted(names)


def _train_once(name, tmp_path, *, fast: bool, monkeypatch):
    from idx import write_idx

    monkeypatch.setenv(fastpath.ENV_DISABLE, "1" if fast else "0")
    plugins = load_plugins()
    registry = plugins.registry
    config = resolve(registry, name)
    sets = []
    if config.train["batch_size"] == "full":
        sets.append(("train.epochs", 60))
    else:
        sets.append(("train.epochs", 2))
    if config.dataset.name in ("mnist", "fashion-mnist"):
        layout = "MNIST" if config.dataset.name == "mnist" else "FashionMNIST"
        sets += [("dataset.root", str(write_idx(tmp_path / "idx", layout=layout))), ("dataset.download", False)]
    config = resolve(registry, name, sets=sets)
    seed = config.seed
    torch.manual_seed(seed)
    build = lambda part, *args, **kw: registry.get(part, getattr(config, part).name).factory(  # noqa: E731
        *args, **kw, **getattr(config, part).params)
    data = build("dataset", generator=torch.Generator().manual_seed(seed))
    if config.train["batch_size"] != "full":  # a few dozen mini-batches show the same thing, faster
        keep = 40 * config.train["batch_size"]
        data = replace(data, x_train=data.x_train[:keep], y_train=data.y_train[:keep],
                       x_test=None if data.x_test is None else data.x_test[:500],
                       y_test=None if data.y_test is None else data.y_test[:500])
    model = build("model")
    loss_fn = build("loss")
    optimizer = build("optimizer", model.parameters())
    state = RunState(config, torch.device("cpu"), data, model, loss_fn, optimizer, torch.Generator().manual_seed(seed + 1))
    train(state, Recorder(state.history, lambda rows: None))
    return model, state.history


@pytest.mark.parametrize("name", _plain_sgd_experiments())
def test_the_engine_takes_the_fast_path_with_the_same_results(name, tmp_path, monkeypatch):
    eager_model, eager_history = _train_once(name, tmp_path, fast=False, monkeypatch=monkeypatch)
    fast_model, fast_history = _train_once(name, tmp_path, fast=True, monkeypatch=monkeypatch)
    assert any(p.grad is not None for p in eager_model.parameters())
    assert all(p.grad is None for p in fast_model.parameters())  # the fast step ran
    assert set(fast_history.curves) == set(eager_history.curves) and fast_history.curves
    for metric, points in eager_history.curves.items():
        epochs, values = zip(*points)
        fast_epochs, fast_values = zip(*fast_history.curves[metric])
        assert fast_epochs == epochs
        torch.testing.assert_close(torch.tensor(fast_values), torch.tensor(values), **TOL, msg=metric)
    for (key, p), q in zip(eager_model.state_dict().items(), fast_model.state_dict().values()):
        torch.testing.assert_close(q, p, **TOL, msg=key)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_cuda_graph_step_matches_the_eager_step_on_cpu():
    x, y = quadratic_data()
    torch.manual_seed(0)
    cpu = Quadratic()
    gpu = Quadratic().cuda()
    gpu.load_state_dict(cpu.state_dict())
    xc, yc = x.cuda(), y.cuda()
    cpu_step = eager_step(cpu, nn.MSELoss(), torch.optim.SGD(cpu.parameters(), lr=2e-5))
    gpu_step = fastpath.sgd_step(gpu, nn.MSELoss(), torch.optim.SGD(gpu.parameters(), lr=2e-5),
                                 full_batch_inputs=(xc, yc))
    assert isinstance(gpu_step, fastpath._GraphedStep)
    cpu_losses, gpu_losses = [], []
    for _ in range(50):
        cpu_losses.append(cpu_step(x, y)[1].detach())
        gpu_losses.append(gpu_step(xc, yc)[1].detach())
    assert gpu_step.graph is not None and not gpu_step.failed
    torch.testing.assert_close(torch.stack(gpu_losses).cpu(), torch.stack(cpu_losses), rtol=1e-5, atol=1e-5)
    for p, q in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(q.cpu(), p, rtol=1e-5, atol=1e-5)
