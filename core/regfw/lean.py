"""Keeping a run's fixed cost down: what torch would load on a first call that regfw never needs.

``torch.optim.Optimizer``'s constructor, ``zero_grad``, ``state_dict`` and ``load_state_dict`` are
wrapped by ``torch._disable_dynamo``, which imports ``torch._dynamo`` (the ``torch.compile``
machinery: about a fifth of a small run's CPU time) on the first call, only to mark the method
"not to be compiled". regfw never compiles, so the wrapper's cache (``__dynamo_disable``, which
``torch._compile._disable_dynamo`` fills on its first call) is filled beforehand with the method
itself. If torch changes that mechanism the attribute is simply unused and the import happens as
before; ``tests/test_naming.py`` checks it still has effect.
"""

from __future__ import annotations

_DONE: list[bool] = []
METHODS = ("__init__", "add_param_group", "zero_grad", "state_dict", "load_state_dict")


def skip_dynamo_import() -> None:
    """Let the optimizer's dynamo-disabled methods run without importing ``torch._dynamo``,
    unless something in this process already imported it (then it costs nothing anyway)."""
    import sys

    if _DONE or "torch._dynamo" in sys.modules:
        return
    _DONE.append(True)
    from torch.optim.optimizer import Optimizer

    for name in METHODS:
        method = Optimizer.__dict__.get(name)
        inner = getattr(method, "__wrapped__", None)
        if inner is not None and getattr(inner, "__dynamo_disable", None) is None:
            inner.__dynamo_disable = inner
