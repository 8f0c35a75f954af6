"""A rerun against its original: every metric history (every key, every step, the value bit for bit),
the summary metrics and the final parameters (the ``model_state_dict.pt`` artifact).

Exact by default. With a relative tolerance ``rel``, two metric values agree when
``|a - b| <= rel * max(|a|, |b|)``; two parameters when ``|a - b| <= rel * max(|a|, |b|, m)``, ``m``
the largest magnitude in their tensor (the scale the vectorized path states its tolerance on).
NaN equals NaN: a run that diverged the same way reproduces. The wall-clock ``train_seconds`` is never
compared. What cannot be compared (an artifact deleted, a run without it) is named, never passed over.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from regfw.store.keys import CURVES, plain

STATE_DICT = "model_state_dict.pt"
NOT_COMPARED = {"summary/train_seconds", "train_seconds"}  # a wall-clock time: different every time


@dataclass
class Verdict:
    tolerance: float = 0.0
    compared: int = 0
    differing: int = 0
    first: str | None = None  # the first difference, in words
    not_compared: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.differing == 0

    @property
    def word(self) -> str:
        """The tag value: identical | within REL | differs."""
        if not self.identical:
            return "differs"
        return "identical" if self.tolerance == 0 else f"within {self.tolerance:g}"

    def line(self) -> str:
        if self.identical:
            exact = "bit for bit" if self.tolerance == 0 else f"within relative {self.tolerance:g}"
            text = f"{self.word}: {self.compared} values compared, all equal {exact}"
        else:
            text = f"differs: {self.first}; {self.differing} of {self.compared} values differ"
        if self.not_compared:
            text += f" (not compared: {'; '.join(self.not_compared)})"
        return text

    def differ(self, what: str, count: int = 1) -> None:
        self.differing += count
        if self.first is None:
            self.first = what


def _close(a: float, b: float, rel: float, scale: float = 0.0) -> bool:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return True
    if rel == 0 or math.isnan(a) or math.isnan(b):
        return False
    return abs(a - b) <= rel * max(abs(a), abs(b), scale)


def compare_runs(client, original: str, rerun: str, tolerance: float = 0.0) -> Verdict:
    verdict = Verdict(tolerance)
    compare_metrics(client, original, rerun, verdict)
    compare_state_dicts(client, original, rerun, verdict)
    return verdict


def compare_metrics(client, original: str, rerun: str, verdict: Verdict) -> None:
    """Curves over every step; summary and learned values (one point each) by their last value, as a
    resumed run logs them again when it finishes."""
    latest = [client.get_run(r).data.metrics for r in (original, rerun)]
    for key in sorted(set(latest[0]) | set(latest[1])):
        if key in NOT_COMPARED:
            continue
        name = plain(key)
        if key not in latest[0] or key not in latest[1]:
            verdict.compared += 1
            verdict.differ(f"{name} is recorded by the {'rerun' if key not in latest[0] else 'original'} only")
            continue
        if not key.startswith(CURVES + "/"):
            verdict.compared += 1
            a, b = latest[0][key], latest[1][key]
            if not _close(a, b, verdict.tolerance):
                verdict.differ(f"{name}: {a!r} (original) vs {b!r} (rerun)")
            continue
        histories = [sorted(client.get_metric_history(r, key), key=lambda m: (m.step, m.timestamp))
                     for r in (original, rerun)]
        for x, y in zip(*histories):
            verdict.compared += 1
            if x.step != y.step:
                verdict.differ(f"{name}: step {x.step} (original) vs step {y.step} (rerun)")
            elif not _close(x.value, y.value, verdict.tolerance):
                verdict.differ(f"{name} at step {x.step}: {x.value!r} (original) vs {y.value!r} (rerun)")
        extra = abs(len(histories[0]) - len(histories[1]))
        if extra:
            longer = "original" if len(histories[0]) > len(histories[1]) else "rerun"
            verdict.compared += extra
            verdict.differ(f"{name}: the {longer} has {extra} more point(s) ({len(histories[0])} vs "
                           f"{len(histories[1])})", extra)


def _state_dict(client, run_id: str, folder: str):
    import torch

    try:
        path = client.download_artifacts(run_id, STATE_DICT, folder)
    except Exception:  # noqa: BLE001 - deleted or never written
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torn or foreign: cannot be compared
        return None


def compare_state_dicts(client, original: str, rerun: str, verdict: Verdict) -> None:
    import torch

    states = []
    with tempfile.TemporaryDirectory(prefix="regfw-verify-") as folder:
        for i, run_id in enumerate((original, rerun)):
            place = Path(folder) / str(i)  # both artifacts have the same name
            place.mkdir()
            states.append(_state_dict(client, run_id, str(place)))
    if states[0] is None or states[1] is None:
        which = "original" if states[0] is None else "rerun"
        verdict.not_compared.append(f"final parameters ({STATE_DICT} is missing or unreadable in the {which} run)")
        return
    for name in sorted(set(states[0]) | set(states[1])):
        if name not in states[0] or name not in states[1]:
            verdict.compared += 1
            verdict.differ(f"{STATE_DICT}: {name} is in the {'rerun' if name not in states[0] else 'original'} only")
            continue
        a, b = states[0][name], states[1][name]
        if a.shape != b.shape or a.dtype != b.dtype:
            verdict.compared += 1
            verdict.differ(f"{STATE_DICT}: {name} is {a.dtype} {tuple(a.shape)} (original) vs {b.dtype} "
                           f"{tuple(b.shape)} (rerun)")
            continue
        verdict.compared += a.numel()
        if not (a.is_floating_point() or a.is_complex()):
            bad = (a != b).reshape(-1)
        else:
            x, y = a.double().reshape(-1), b.double().reshape(-1)
            same = (x == y) | (torch.isnan(x) & torch.isnan(y))
            if verdict.tolerance:
                scale = float(torch.nan_to_num(torch.maximum(x.abs(), y.abs())).max()) if x.numel() else 0.0
                same |= (x - y).abs() <= verdict.tolerance * torch.maximum(torch.maximum(x.abs(), y.abs()),
                                                                           torch.tensor(scale, dtype=x.dtype))
            bad = ~same
        count = int(bad.sum())
        if count:
            index = int(bad.nonzero()[0])
            place = tuple(int(i) for i in torch.unravel_index(torch.tensor(index), a.shape)) if a.ndim else ()
            where = f"{name}[{', '.join(map(str, place))}]" if place else name
            first = f"{STATE_DICT}: {where}: {a.reshape(-1)[index].item()!r} (original) vs " \
                    f"{b.reshape(-1)[index].item()!r} (rerun)"
            verdict.differ(first, count)
