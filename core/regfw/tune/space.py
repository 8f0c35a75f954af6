"""Search spaces: ``--space KEY=FORM`` parsed, checked against the declared params, and sampled.

Forms (docs/tuning.md, 'The space'):

- ``float(LOW,HIGH)``: a number in [LOW, HIGH]; ``float(LOW,HIGH,log)`` on a log scale,
  ``float(LOW,HIGH,step=S)`` on the grid LOW, LOW+S, ...
- ``log(LOW,HIGH)``: short for ``float(LOW,HIGH,log)``.
- ``int(LOW,HIGH)``, ``int(LOW,HIGH,log)``, ``int(LOW,HIGH,step=S)``: an integer in [LOW, HIGH].
- ``choice(A,B,...)``: one of the values, each written as a ``--set`` value (``[64,64]`` for a list).

Keys are ``--set`` keys. Every bound and every choice is resolved into a full configuration here,
exactly as ``--set KEY=VALUE`` would be, so a key the component does not declare, a bound its type
or range refuses, or a choice that does not fit is one line before anything runs. Nothing here
imports optuna: :meth:`Dimension.distribution` does, when a study is made.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from regfw.errors import RegfwError, show

FORMS = "float(LOW,HIGH[,log|,step=S]), log(LOW,HIGH), int(LOW,HIGH[,log|,step=S]), choice(A,B,...)"
FORM_RE = re.compile(r"^\s*(float|log|int|choice)\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class Dimension:
    """One searched key: its form, bounds or choices, as the user wrote them."""

    key: str
    kind: str  # float | int | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()  # raw texts, typed later like --set values
    text: str = ""  # the form as typed, for messages and the parent run's params

    def distribution(self):
        """The Optuna distribution of this dimension (imports optuna)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def as_set(self, value) -> str:
        """A sampled value as the text of ``--set KEY=VALUE``."""
        if self.kind == "float":
            return f"{self.key}={float(value)!r}"
        return f"{self.key}={value}"

    def canonical(self) -> str:
        """The form written one way (``log(1e-05,0.1)`` and ``float(0.00001,0.1,log)`` agree)."""
        if self.kind == "choice":
            return f"choice({','.join(self.choices)})"
        extra = ",log" if self.log else (f",step={self.step!r}" if self.step is not None else "")
        return f"{self.kind}({self.low!r},{self.high!r}{extra})"


def _number(text: str, kind: str, where: str):
    text = text.strip()
    try:
        if kind == "int":
            return int(text.replace("_", ""))
        value = float(text)
    except ValueError:
        wanted = "an integer" if kind == "int" else "a number"
        raise RegfwError(f"{where}: expected {wanted}, got {show(text)}") from None
    if not math.isfinite(value):
        raise RegfwError(f"{where}: bounds must be finite, got {show(text)}")
    return value


def parse_dimension(item: str) -> Dimension:
    """``optimizer.lr=log(1e-5,1e-1)`` -> a :class:`Dimension` (syntax only; see :func:`check_space`)."""
    from regfw.sweep.grid import split_top_level

    if "=" not in item:
        raise RegfwError(f"--space expects KEY=FORM with FORM one of {FORMS}, got {show(item)}")
    key, _, form = item.partition("=")
    key = key.strip()
    where = f"--space {key}={form.strip()}"
    if not key:
        raise RegfwError(f"--space expects KEY=FORM with a key, got {show(item)}")
    match = FORM_RE.match(form)
    if match is None:
        raise RegfwError(f"{where}: unknown form; use one of {FORMS}")
    name, inner = match.group(1), match.group(2)
    args = [a.strip() for a in split_top_level(inner)] if inner.strip() else []
    if name == "choice":
        if not args or any(a == "" for a in args):
            raise RegfwError(f"{where}: choice() needs at least one value, none empty")
        if len(set(args)) != len(args):
            raise RegfwError(f"{where}: a choice is given twice")
        return Dimension(key, "choice", choices=tuple(args), text=form.strip())
    kind = "float" if name in ("float", "log") else "int"
    if len(args) < 2:
        raise RegfwError(f"{where}: {name}() needs LOW,HIGH")
    low, high = _number(args[0], kind, where), _number(args[1], kind, where)
    log, step = name == "log", None
    for extra in args[2:]:
        if extra == "log":
            log = True
        elif extra.startswith("step="):
            step = _number(extra[len("step="):], kind, where)
            if step <= 0:
                raise RegfwError(f"{where}: step must be positive")
        else:
            raise RegfwError(f"{where}: unknown option {show(extra)}; {name}() takes 'log' or 'step=S'")
    if len(args) > 2 and name == "log":
        raise RegfwError(f"{where}: log() takes LOW,HIGH only")
    if low >= high:
        raise RegfwError(f"{where}: LOW must be below HIGH")
    if log and step is not None:
        raise RegfwError(f"{where}: a log scale and a step do not combine")
    if log and low <= 0:
        raise RegfwError(f"{where}: a log scale needs LOW > 0")
    if step is not None and step > high - low:
        raise RegfwError(f"{where}: step {step!r} is wider than the range")
    return Dimension(key, kind, low, high, log, step, text=form.strip())


def parse_space(items) -> list[Dimension]:
    dims = [parse_dimension(item) for item in items]
    keys = [d.key for d in dims]
    for key in keys:
        if keys.count(key) > 1:
            raise RegfwError(f"--space {key} is given twice; keep one")
    return dims


def _declared(registry, config, key: str):
    """The :class:`regfw.params.Param` that ``key`` sets in ``config`` (None for a component swap)."""
    from regfw.config import PARTS, SEED
    from regfw.train_schema import TRAIN_SCHEMA

    section, _, sub = key.partition(".")
    if key == "seed":
        return SEED
    if section == "train" and sub:
        return TRAIN_SCHEMA.get(sub)
    if section in PARTS and sub:
        return registry.get(section, getattr(config, section).name).params.get(sub)
    return None


def check_space(registry, experiment: str, dims: list[Dimension], *, sets=(), config_file=None, swaps=None,
                flags=None) -> object:
    """Resolve every bound and choice as a ``--set`` would be, and check each form against the
    param's type; the base configuration (the ``--set`` values, nothing searched) is returned."""
    from regfw.config import parse_set, resolve, split_assignment

    set_keys = {split_assignment(item)[0] for item in sets}
    fixed = set(set_keys) | {k for k, v in (flags or {}).items() if v is not None}
    for dim in dims:
        if dim.key in fixed:
            raise RegfwError(f"{dim.key} is searched by --space and also fixed by --set or an option; drop one")
    if not dims:
        raise RegfwError(f"regfw tune needs at least one --space KEY=FORM ({FORMS})")

    def config_with(extra: list[str]):
        return resolve(registry, experiment, config_file=config_file, sets=parse_set(list(sets) + extra),
                       swaps=swaps, flags=flags)

    base = config_with([])
    for dim in dims:
        where = f"--space {dim.key}={dim.text}"
        if dim.kind != "choice":  # the form must fit the param's type before its bounds are tried
            try:
                param = _declared(registry, base, dim.key)
            except RegfwError:
                param = None
            if param is not None and param.type is int and dim.kind == "float":
                raise RegfwError(f"{where}: {dim.key} is an integer; use int(LOW,HIGH)")
            if param is not None and param.type not in (int, float):
                raise RegfwError(f"{where}: {dim.key} is {param.describe()}, not a number; use choice(...)")
        values = dim.choices if dim.kind == "choice" else (dim.low, dim.high)
        for value in values:
            try:
                config_with([f"{dim.key}={value}"])
            except RegfwError as exc:
                raise RegfwError(f"{where}: {exc}") from None
        if dim.kind != "choice" and _declared(registry, base, dim.key) is None and "." not in dim.key \
                and dim.key != "seed":
            raise RegfwError(f"{where}: {dim.key} is a component name, not a number; use choice(...)")
    return base


def space_record(dims: list[Dimension]) -> dict:
    """``{key: canonical form}``: what a study remembers of its space (to refuse another one)."""
    return {d.key: d.canonical() for d in dims}


def space_difference(stored: dict, wanted: dict) -> str:
    """What differs between two space records, in a few words ('' when they agree)."""
    parts = []
    for key in sorted(set(stored) | set(wanted)):
        if key not in wanted:
            parts.append(f"{key} was searched ({stored[key]})")
        elif key not in stored:
            parts.append(f"{key} was not searched")
        elif stored[key] != wanted[key]:
            parts.append(f"{key} was {stored[key]}, now {wanted[key]}")
    return "; ".join(parts)
