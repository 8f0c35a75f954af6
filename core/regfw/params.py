"""Typed, validated component parameters.

A plugin declares parameters either as plain defaults (``{"lr": 0.01}``: the type is the
default's type) or as :class:`Param` for more (nullable, bounds, choices, extra literals).
Values from ``--set``, ``--config`` and CLI flags are coerced here, so every source of a value
gets the same one-line error for a wrong type or an out-of-range value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from regfw.errors import RegfwError, did_you_mean, show

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}


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

    def __post_init__(self):
        if self.type is None:
            object.__setattr__(self, "type", type(self.default) if self.default is not None else str)
        if self.default is None:
            object.__setattr__(self, "nullable", True)  # a None default means "unset" is valid
        if self.type is list and self.item is None and self.default:
            object.__setattr__(self, "item", type(self.default[0]))

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
        self._check_range(coerced, key)
        return coerced

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
                try:
                    return int(value.strip().replace("_", ""))
                except ValueError:
                    raise bad from None
            raise bad
        if want is float:
            if isinstance(value, bool):
                raise bad
            if isinstance(value, (int, float)):
                number = float(value)
            elif isinstance(value, str):
                try:
                    number = float(value.strip())
                except ValueError:
                    raise bad from None
            else:
                raise bad
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
    return out

