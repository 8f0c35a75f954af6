"""How regfw rounds a number it shows: in the store (what MLflow's UI displays) and on the terminal.

Why one rule: the training figures are float32 (7 significant decimal digits); a float32 widened to
float64, or a float64 figure beside them (the least-squares optimum, a plugin's ``float(self.a)``),
showed as 0.3309805393218994 next to 0.0834412. Seven significant digits, by Python's correctly
rounded formatting, is deterministic (a rerun stores the same bits: ``regfw rerun --verify``
compares stored histories exactly) and idempotent (rounding a rounded value changes nothing).
Full precision stays where a comparison needs it: the state dict, ``learned_parameters.json``,
the computation of ``excess_loss`` before it is stored.
"""

from __future__ import annotations

import math

SIGNIFICANT = 7  # decimal digits a float32 holds


def rounded(value: float) -> float:
    """``value`` to :data:`SIGNIFICANT` significant digits: 0.8877 rather than 0.8877000212669373.
    Zero, inf and nan unchanged."""
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{SIGNIFICANT}g}")


def figure(value: float) -> str:
    """``value`` as printed: the digits the store holds (``418.0798``, ``1.01926``, ``1e-05``)."""
    return f"{float(value):.{SIGNIFICANT}g}"
