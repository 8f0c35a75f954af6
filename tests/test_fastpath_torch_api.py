"""The private torch APIs the fast path (core/regfw/fastpath.py) relies on, checked by name.

The fast path probes them at run time and falls back to the eager step when they are missing, so a
torch upgrade that moves one would only make runs silently slower. This test fails loudly instead,
naming what moved: look at fastpath.py before pinning the new torch."""

import pytest
import torch
from torch import nn
from torch.nn.modules import module
from torch.optim import optimizer as optim_module

from regfw import fastpath

PRIVATE = [
    ("torch._foreach_add_", lambda: torch._foreach_add_),
    ("torch._C._nn.mse_loss", lambda: torch._C._nn.mse_loss),
    ("torch.nn._reduction.get_enum", lambda: nn._reduction.get_enum),
    ("torch.autograd.Variable._execution_engine.run_backward",
     lambda: torch.autograd.Variable._execution_engine.run_backward),
    ("torch.optim.optimizer._global_optimizer_pre_hooks", lambda: optim_module._global_optimizer_pre_hooks),
    ("torch.optim.optimizer._global_optimizer_post_hooks", lambda: optim_module._global_optimizer_post_hooks),
    ("torch.optim.SGD()._optimizer_step_pre_hooks",
     lambda: torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)._optimizer_step_pre_hooks),
    ("torch.nn.modules.module._global_forward_hooks", lambda: module._global_forward_hooks),
    ("torch.nn.modules.module._global_forward_pre_hooks", lambda: module._global_forward_pre_hooks),
    ("torch.nn.modules.module._global_backward_hooks", lambda: module._global_backward_hooks),
    ("torch.nn.modules.module._global_backward_pre_hooks", lambda: module._global_backward_pre_hooks),
]


@pytest.mark.parametrize("name, get", PRIVATE, ids=[name for name, _ in PRIVATE])
def test_private_torch_api_the_fast_path_uses_is_still_there(name, get):
    try:
        found = get()
    except AttributeError as exc:
        pytest.fail(f"{name} moved in torch {torch.__version__} ({exc}); regfw's fast path would silently fall back")
    assert found is not None


def test_the_fast_step_is_taken_for_plain_sgd_on_this_torch():
    """Not only present: actually usable, so the engine picks the fast step."""
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 1), torch.randn(8, 1)
    step = fastpath.sgd_step(model, nn.MSELoss(), optimizer, full_batch_inputs=(x, y))
    assert step is not None, "fastpath.sgd_step declined plain SGD on this torch: check its probes"
