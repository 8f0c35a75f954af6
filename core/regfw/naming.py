"""Run names: the experiment plus what the user changed, e.g. ``linear lr=0.1 seed=2``.

Only changes are named: a swapped-in component (``optimizer=adam``) is compared with its own
defaults, not with the tuned values of the component it replaced, so its untouched defaults stay out
of the name. Shorter parts come first, so a name cut short by a narrow column still tells runs
apart.

A sweep's points are listed under their parent, whose name already says the experiment and what
every point shares; a point is named by what tells it from its siblings only (``seed=3``,
``lr=0.1 seed=1``): the shortest name that does, so a narrow column still shows the difference.
The axes keep the sweep's order in every point's name (so the names read as one table), and
every name is distinct.
"""

from __future__ import annotations

from regfw.config import PARTS, resolve
from regfw.errors import RegfwError

HIDDEN = ("experiment", "device")


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _labels(keys) -> dict[str, str]:
    """``optimizer.lr`` -> ``lr``, unless two keys would share the short form."""
    shorts = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if shorts.count(s) == 1 else k) for k, s in zip(keys, shorts)}


def _baseline(registry, config, cache: dict) -> dict:
    """What the run would be with nothing changed but its choice of components."""
    swaps = tuple((part, getattr(config, part).name) for part in PARTS)
    key = (config.experiment, swaps)
    if key not in cache:
        # A part the experiment leaves ambiguous (two other plugins share its name) is whatever the
        # user chose; its name is then compared with the experiment's ambiguous one, so it is named.
        ambiguous = registry.ambiguous_parts(registry.get("experiment", config.experiment))
        plain = resolve(registry, config.experiment, swaps={part: getattr(config, part).name for part in ambiguous})
        plain = plain.flat_params() | ambiguous
        try:
            swapped = resolve(registry, config.experiment, swaps=dict(swaps)).flat_params()
        except RegfwError:  # a component that cannot start from its own defaults: compare with the plain run
            swapped = plain
        # Component names compare with the experiment's own choice; their params with their own defaults.
        cache[key] = swapped | {part: plain[part] for part in PARTS}
    return cache[key]


def default_run_name(registry, config, axes=(), cache: dict | None = None) -> str:
    """The experiment, then the swept ``axes`` (always), then every other value that differs from
    the defaults, shortest first."""
    base = _baseline(registry, config, {} if cache is None else cache)
    flat = config.flat_params()
    labels = _labels(list(flat))
    named = [f"{labels[k]}={_shown(flat[k])}" for k in axes if k in flat]
    changed = [f"{labels[k]}={_shown(v)}" for k, v in flat.items()
               if k not in HIDDEN and k not in axes and base.get(k) != v]
    return " ".join([config.experiment] + named + sorted(changed, key=len))


def point_names(registry, configs, axes) -> list[str]:
    """Distinct names for a sweep's points: the swept values that differ between them, in the
    sweep's order (``#N`` added where two would still read the same). A single point (no axis)
    has no sibling to tell apart from: it keeps its full run name."""
    flats = [c.flat_params() for c in configs]
    varying = [k for k in axes if len({_shown(f.get(k)) for f in flats}) > 1]
    if not varying:
        cache: dict = {}
        names = [default_run_name(registry, c, axes, cache) for c in configs]
    else:
        labels = _labels(list(flats[0]))
        parts = {k: [f"{labels.get(k, k)}={_shown(f.get(k))}" for f in flats] for k in varying}
        names = [" ".join(parts[k][i] for k in varying) for i in range(len(configs))]
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    return [f"{name} #{i + 1}" if seen[name] > 1 else name for i, name in enumerate(names)]
