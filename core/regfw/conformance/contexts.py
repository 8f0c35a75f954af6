"""The contexts a component is checked in: its plugin's data sampled small, or plain synthetic data.

Also the reference ("probe") model, loss and optimizer used where the component under test is not
one of those, the training settings of a trial, and :class:`Setup`, the seeded makers of one trial.
torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from regfw.conformance.results import Failed, Skipped
from regfw.errors import RegfwError, squeeze, one_line
from regfw.registry import Entry

SAMPLE_ROWS = 256  # training rows used per check: enough for mini-batches, fast on any dataset
SYNTHETIC_ROWS = 64
STEPS = 2
DEFAULT_IN = 3  # in_features given to a model that declares it without a default and meets no dataset


def guarded(check: str, what: str, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``; any exception it raises becomes a failure of ``check``."""
    try:
        return fn(*args, **kwargs)
    except (Failed, Skipped):
        raise
    except Exception as exc:  # noqa: BLE001 - any exception is the finding
        raise Failed(check, f"{what} raised {one_line(exc)}") from exc


def seed(value: int) -> None:
    from regfw.build import seed_everything

    seed_everything(value)


def defaults(entry: Entry) -> dict:
    return {k: p.default for k, p in entry.params.items()}


def build_data(entry: Entry, params: dict, seed_value: int):
    """The dataset ``entry`` built with ``params``; :class:`Skipped` when the user must fix something
    (a :class:`RegfwError`: data not downloaded, say), :class:`Failed` for anything else."""
    import torch

    seed(seed_value)
    try:
        data = entry.factory(generator=torch.Generator().manual_seed(seed_value), **params)
    except RegfwError as exc:
        reason = squeeze(str(exc), limit=10_000)
        if not reason.startswith(f"dataset '{entry.name}'"):
            reason = f"dataset '{entry.name}': {reason}"
        raise Skipped(f"cannot be built here: {reason if len(reason) <= 240 else reason[:237] + '...'}") from exc
    except Exception as exc:  # noqa: BLE001
        raise Failed("build", f"dataset '{entry.name}' raised {one_line(exc)}") from exc
    return built(entry, data)


def built(entry: Entry, got):
    """``got``, what ``entry``'s factory returned, or the failure ``regfw run`` would report."""
    from regfw.build import wrong_type

    reason = wrong_type(entry, got)
    if reason is not None:
        raise Failed("build", reason)
    return got


def sample(data, rows: int = SAMPLE_ROWS):
    """The first ``rows`` rows of each split: a check trains on few, whatever the dataset's size."""
    cut = lambda t: None if t is None else t[:rows]  # noqa: E731
    return replace(data, x_train=cut(data.x_train), y_train=cut(data.y_train),
                   x_test=cut(data.x_test), y_test=cut(data.y_test))


def synthetic(in_shape: tuple, task: str, out_width: int, seed_value: int, rows: int = SYNTHETIC_ROWS):
    """Plain data for a component met without its own dataset: x ~ N(0, 1), targets per task."""
    import torch

    from regfw.data import Data

    g = torch.Generator().manual_seed(seed_value)
    x = torch.randn((rows, *in_shape), generator=g)
    if task == "multiclass":
        y = torch.randint(0, max(out_width, 2), (rows,), generator=g)
    elif task == "binary":
        y = torch.randint(0, 2, (rows, out_width), generator=g).float()
    else:
        y = torch.randn((rows, out_width), generator=g)
    return Data(x, y, task=task)


def finite_data(data) -> bool:
    import torch

    tensors = [data.x_train, data.y_train] + ([data.x_test, data.y_test] if data.has_test else [])
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


class Probe:
    """The reference model used where the component under test is not a model."""

    @staticmethod
    def model(in_features: int, out_features: int, seed_value: int):
        import torch.nn as nn

        seed(seed_value)
        return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out_features))

    @staticmethod
    def loss(task: str):
        import torch.nn as nn

        return {"regression": nn.MSELoss, "binary": nn.BCEWithLogitsLoss, "multiclass": nn.CrossEntropyLoss}[task]()

    @staticmethod
    def optimizer(parameters):
        import torch

        return torch.optim.SGD(parameters, lr=0.01)


def widths(data) -> tuple[int, int]:
    """(flattened input width, output width) a reference model needs for ``data``."""
    x, y = data.x_train, data.y_train
    in_width = int(x[0].numel()) if x.ndim > 1 else 1
    if data.task == "multiclass":
        out = int(y.max().item()) + 1 if len(y) else 2
        return in_width, max(out, 2)
    return in_width, int(y[0].numel()) if y.ndim > 1 else 1


@dataclass
class Setup:
    """Everything one trial builds; each maker is seeded so two trials can be compared."""

    make_data: Callable[[int], object]
    make_model: Callable[[int], object]
    make_loss: Callable[[], object]
    make_optimizer: Callable[[object], object]
    train: dict
    context: str  # what the component was checked with, for the report


@dataclass
class TrialConfig:
    """What the engine reads of a run's Config in a trial: the training keys (no MLflow, no names)."""

    train: dict


def train_settings(base: dict | None = None) -> dict:
    """A trial's training keys: ``base`` (an experiment's) cut to STEPS epochs, logging every one."""
    settings = {"epochs": STEPS, "batch_size": "full", "shuffle": True, "log_every": 1, "metrics": [], "grad": "autograd"}
    settings.update(base or {})
    settings.update(epochs=STEPS, log_every=1, metrics=[])
    return settings
