"""Whether a run's model can be built for its dataset and fits its device, found without allocating it.

The model is built on PyTorch's ``meta`` device: every parameter gets a shape and a dtype but no
memory, so a 4-billion-parameter MLP costs milliseconds here instead of a minute and 12 GB before
"can't allocate". A plugin's own refusal (a :class:`RegfwError` its factory raises, e.g. a size
the dataset does not give) is raised as it would be by the real build; a factory that cannot run
on ``meta`` at all (it reads a value back, calls NumPy on a tensor) is not judged here, and the
real build says what it says.
"""

from __future__ import annotations

import os

from regfw.errors import RegfwError


class TooBig(RegfwError):
    """A model with more bytes of parameters than its device has memory."""


def meta_model(config, registry):
    """``config``'s model built on the meta device, or None when its factory cannot build there."""
    import torch

    entry = registry.get("model", config.model.name)
    try:
        with torch.device("meta"):
            model = entry.factory(**config.model.params)
    except RegfwError:
        raise  # the plugin's own words about these params: the real build would say the same
    except Exception:  # noqa: BLE001 - meta-only trouble; the real build reports real errors
        return None
    return model if isinstance(model, torch.nn.Module) else None  # not a module: the real build says so


def model_bytes(model) -> tuple[int, int]:
    """(number of values, bytes) in the model's parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() for t in tensors), sum(t.numel() * t.element_size() for t in tensors)


def device_memory(spec: str) -> tuple[str, int] | None:
    """(the device's name, its memory in bytes) for the device ``spec`` a run would use; None
    where it is not known (MPS shares the machine's memory in ways torch does not report)."""
    import torch

    from regfw.device import resolve_device

    try:
        device = resolve_device(spec)
    except RegfwError:  # a device this machine lacks: the run says so in its own words
        return None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}", torch.cuda.get_device_properties(index).total_memory
    if device.type == "cpu":
        try:
            return "the machine", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
            return None
    return None


def gib(count: int) -> str:
    return f"{count / 2**30:.1f} GiB"


def activation_bytes(model, data, batch_size) -> tuple[int, int] | None:
    """(bytes of every leaf module's output in one training step's forward pass, what autograd keeps
    for the backward pass; the batch's rows), found by a forward pass on the meta device; None when
    the model cannot run there."""
    import torch

    rows = len(data.x_train)
    batch = rows if batch_size in (None, "full") else min(int(batch_size), rows)
    total = [0]

    def count(_module, _inputs, output):
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel() * t.element_size()

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        model(torch.empty((batch, *data.x_train.shape[1:]), dtype=data.x_train.dtype, device="meta"))
    except Exception:  # noqa: BLE001 - meta-only trouble, or a real one the run itself reports
        return None
    finally:
        for handle in handles:
            handle.remove()
    return total[0], batch


def check_model_fits(config, registry, what: str = "", data=None) -> None:
    """Refuse, in one line and before anything is allocated, a model its factory refuses for these
    params, or one whose training needs more bytes than the device has memory: its parameters
    and their gradients, and (given ``data``) the outputs one batch leaves in every layer.
    Optimizer state and temporaries come on top: what passes here can still run out of memory,
    but nothing is refused that could have fit, and the impossible is never tried for a minute."""
    model = meta_model(config, registry)
    if model is None:
        return
    values, size = model_bytes(model)
    needed, parts = 2 * size, f"{gib(size)} of parameters as {dtypes(model)} and as much for their gradients"
    memory = device_memory(config.device)
    if memory is None:
        return
    if data is not None and worth_a_forward(model, size, memory[1]):
        found = activation_bytes(model, data, config.train.get("batch_size"))
        if found:
            kept, rows = found
            needed += kept
            parts += f", {gib(kept)} of layer outputs for a batch of {rows:,} rows"
    if needed <= memory[1]:
        return
    where, total = memory
    raise TooBig(f"{what}model '{config.model.name}' with {values:,} parameters needs at least {gib(needed)} to "
                 f"train ({parts}), more than the {gib(total)} of memory {where} has; make it smaller "
                 f"({sizes(config.model.params)}) or the batch")


RECURRENT_SHARE = 1024  # a recurrent model is measured once its parameters take 1/1024 of the memory


def worth_a_forward(model, size: int, memory: int) -> bool:
    """Whether to measure the layer outputs: always, except for a recurrent model with small
    parameters. Why: on the meta device an LSTM runs step by step in Python (a second for
    sine-bursts' 100 steps), and a model that small needs a batch far past any dataset here to fill
    the memory."""
    import torch

    recurrent = any(isinstance(m, torch.nn.RNNBase) for m in model.modules())
    return not recurrent or size * RECURRENT_SHARE >= memory


def dtypes(model) -> str:
    return "/".join(sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()})) or "no dtype"


def sizes(params: dict) -> str:
    """The model's integer-valued params, as ``--set`` would give them (what makes it big)."""
    shown = [f"model.{k}={v}" for k, v in params.items()
             if (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, list) and all(isinstance(i, int) for i in v))]
    return ", ".join(shown) or "none given"


def check_sweep_fits(points, registry) -> None:
    """A sweep's points before any run exists: the first point's model must build for its dataset
    (a mismatch it shows, every point shows: the sweep would end "N of N points failed"), and no
    point's model may be bigger than its device. A later point its plugin refuses for its own
    values still runs and fails alone, with its reason in its run."""
    seen = set()
    for position, point in enumerate(points):
        config = point.config
        key = (config.model.name, repr(sorted(config.model.params.items())), config.device)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_model_fits(config, registry, what=f"sweep point {point.index + 1}: ")
        except TooBig:
            raise
        except RegfwError:
            if position == 0:
                raise
