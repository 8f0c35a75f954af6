"""Run names: the experiment plus what the user changed, e.g. ``linear lr=0.1 seed=2``."""

from __future__ import annotations

from regfw.config import resolve


def default_run_name(registry, config) -> str:
    """The experiment plus every value that differs from the experiment's own defaults."""
    base = resolve(registry, config.experiment).flat_params()
    parts = [config.experiment]
    for key, value in config.flat_params().items():
        if key in ("experiment", "device") or base.get(key) == value:
            continue
        short = key.rsplit(".", 1)[-1] if "." in key else key
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        parts.append(f"{short}={shown}")
    return " ".join(parts)
