"""Typed, validated component parameters.

A plugin declares parameters either as plain defaults (``{"lr": 0.01}``: the type is the
default's type) or as :class:`Param` for more (nullable, bounds, choices, extra literals).
Values from ``--set``, ``--config`` and CLI flags are coerced here, so every source of a value
gets the same one-line error for a wrong type or an out-of-range value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from regfw.errors import RegfwError, did_you_mean, show

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}

# What a number must fit, by the dtype it ends up in. Floats become float32 tensors (torch's default
# dtype: a learning rate, a noise std, a data bound), integers become int64 (tensor sizes, MLflow's
# step column). A value past these would only fail mid-run, after the run exists, or never end.
LIMITS = {"float32": 3.4028234663852886e38, "float64": 1.7976931348623157e308,
          "int64": 2**63 - 1, "int32": 2**31 - 1}
# A dataset's number ends up in the data, which a loss squares (MSE): past sqrt(float32 max) the
# first loss is inf, a FAILED run that blames "NaN or inf in the data".
DATA_LIMIT = math.sqrt(LIMITS["float32"])
# Underscores are read only as Python's thousands grouping (1_000_000): `1_0` is a typo that Python
# would read as 10, and a size silently read as 10 is worse than a refusal.
_GROUPED = re.compile(r"^[+-]?\d{1,3}(_\d{3})+(\.\d*)?([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Param:
    """One declared parameter: its default, type and what values it accepts."""

    default: Any
    type: type | None = None
    help: str = ""
    nullable: bool = False
    choices: tuple = ()
    min: float | None = None  # inclusive lower bound
    gt: float | None = None  # exclusive lower bound
    literals: tuple = ()  # strings accepted besides the type, e.g. ("full",) for batch sizes
    item: type | None = None  # element type of a list
    finite: bool = True  # floats: reject nan and inf
    max: float | None = None  # inclusive upper bound
    lt: float | None = None  # exclusive upper bound
    dtype: str | None = None  # what the value must fit (LIMITS); default float32 or int64 by type

    def __post_init__(self):
        if self.type is None:
            object.__setattr__(self, "type", type(self.default) if self.default is not None else str)
        if self.default is None:
            object.__setattr__(self, "nullable", True)  # a None default means "unset" is valid
        if self.type is list and self.item is None and self.default:
            object.__setattr__(self, "item", type(self.default[0]))
        if self.dtype is None and self.type in (int, float):
            object.__setattr__(self, "dtype", "int64" if self.type is int else "float32")

    def describe(self) -> str:
        kind = self.type.__name__ if self.type is not list else f"list[{(self.item or str).__name__}]"
        extras = [repr(v) for v in self.literals] + (["null"] if self.nullable else [])
        return " | ".join([kind] + extras)

    def coerce(self, value: Any, key: str) -> Any:
        """Return ``value`` as this parameter's type, or raise a one-line :class:`RegfwError`."""
        if value is None:
            if self.nullable:
                return None
            raise RegfwError(f"{key} may not be empty; expected {_TYPE_NAMES.get(self.type, self.type)}")
        if isinstance(value, str) and value in self.literals:
            return value
        coerced = self._coerce_type(value, key)
        self._check_fits(coerced, value, key)
        self._check_range(coerced, key)
        return coerced

    def _check_fits(self, number: Any, given: Any, key: str) -> None:
        """A number past what its dtype holds: one line in the param's own words."""
        if self.dtype is None or isinstance(number, bool) or not isinstance(number, (int, float)):
            return
        limit = LIMITS[self.dtype]
        if (isinstance(number, int) or math.isfinite(number)) and abs(number) > limit:
            most = f"{limit:.4g}" if isinstance(limit, float) else f"2**{limit.bit_length()} - 1"
            raise RegfwError(f"{key}={typed(given)} does not fit {self.dtype} (at most {most})")

    def _coerce_type(self, value: Any, key: str) -> Any:
        want = self.type
        bad = RegfwError(
            f"{key} expects {_TYPE_NAMES.get(want, want.__name__)}"
            + (f" or {', '.join(map(repr, self.literals))}" if self.literals else "")
            + f", got {show(value)}"
        )
        if want is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return value.lower() in ("true", "yes", "on", "1")
            raise bad
        if want is int:
            if isinstance(value, bool):
                raise bad
            if isinstance(value, int):
                return value
            if isinstance(value, str):
                _check_grouping(value, key)
                try:
                    return int(value.strip().replace("_", ""))
                except ValueError:
                    raise bad from None
            raise bad
        if want is float:
            if isinstance(value, bool):
                raise bad
            try:
                if isinstance(value, (int, float)):
                    number = float(value)
                elif isinstance(value, str):
                    _check_grouping(value, key)
                    number = float(value.strip())
                else:
                    raise bad
            except ValueError:
                raise bad from None
            except OverflowError:  # an integer of hundreds of digits
                raise RegfwError(f"{key}={typed(value)} does not fit {self.dtype or 'float64'}") from None
            if math.isinf(number) and not (isinstance(value, float) or "inf" in value.lower()):
                # 1e309 or 400 digits: a number, too big even for the float64 it was read into
                raise RegfwError(f"{key}={typed(value)} does not fit {self.dtype or 'float64'}")
            if self.finite and not math.isfinite(number):
                raise RegfwError(f"{key} must be a finite number, got {show(value)}")
            return number
        if want is str:
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return str(value)
            raise bad
        if want is list:
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            if not isinstance(value, (list, tuple)):
                raise bad
            element = Param(None, type=self.item or str, nullable=False, finite=self.finite)
            return [element.coerce(v, f"{key}[{i}]") for i, v in enumerate(value)]
        raise bad

    def _check_range(self, value: Any, key: str) -> None:
        if self.choices and value not in self.choices:
            raise RegfwError(f"{key} must be one of {', '.join(map(str, self.choices))}, got {show(value)}")
        numbers = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []
        if isinstance(value, list):
            numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for number in numbers:
            if self.min is not None and number < self.min:
                raise RegfwError(f"{key} must be at least {self.min}, got {show(value)}")
            if self.gt is not None and number <= self.gt:
                raise RegfwError(f"{key} must be greater than {self.gt}, got {show(value)}")
            if self.max is not None and number > self.max:
                raise RegfwError(f"{key} must be at most {self.max}, got {show(value)}")
            if self.lt is not None and number >= self.lt:
                raise RegfwError(f"{key} must be less than {self.lt}, got {show(value)}")


def typed(value: Any) -> str:
    """The value as the user typed it (a string) or as YAML gave it, cut to one readable line."""
    text = value.strip() if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:18] + "..." + text[-8:] + f" ({len(text)} characters)"


def _check_grouping(text: str, key: str) -> None:
    if "_" in text and not _GROUPED.match(text.strip()):
        read = text.strip().replace("_", "")
        raise RegfwError(f"{key}={typed(text)}: an underscore only groups digits in threes (1_000); "
                         f"Python would read this as {read[:40]}: write that if you mean it")


def check_data_scale(key: str, value: Any, given: Any) -> None:
    """A dataset's number (a bound, a weight, a noise std) must stay finite once a loss squares it."""
    numbers = value if isinstance(value, list) else [value]
    for number in numbers:
        if isinstance(number, float) and abs(number) > DATA_LIMIT:
            raise RegfwError(f"{key}={typed(given)} does not fit float32 data: a loss squares it, and past "
                             f"{DATA_LIMIT:.4g} the square is inf")


def as_params(spec: dict | None) -> dict[str, Param]:
    """Normalise a plugin's ``params=`` (plain defaults or Param objects) to ``{name: Param}``."""
    out = {}
    for name, value in (spec or {}).items():
        out[name] = value if isinstance(value, Param) else Param(value)
        # A default must pass its own validation: a plugin bug is caught at registration.
        out[name].coerce(out[name].default, name)
    return out


def validate(section: str, declared: dict[str, Param], given: dict, owner: str) -> dict:
    """Coerce ``given`` against ``declared``; an unknown key names the valid ones."""
    if not isinstance(given, dict):
        raise RegfwError(f"{section} parameters must be a mapping of key: value, got {show(given)}")
    out = {}
    for key, value in given.items():
        if key not in declared:
            valid = ", ".join(sorted(declared)) or "(none)"
            hint = did_you_mean(str(key), declared) if declared else ""
            hint = hint if hint.startswith(" (did") else ""
            raise RegfwError(f"unknown key {show(f'{section}.{key}')} for {owner}{hint}; valid keys: {valid}")
        out[key] = declared[key].coerce(value, f"{section}.{key}")
        if section == "dataset":
            check_data_scale(f"{section}.{key}", out[key], value)
    return out

