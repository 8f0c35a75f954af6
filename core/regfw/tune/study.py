"""The Optuna side of a search: samplers, pruners, the study's storage, and continuing a study.

Only ``regfw tune`` imports this module (and so optuna). The study lives in Optuna's own RDB
storage: by default a SQLite file beside a SQLite run store (``optuna.db`` in the store's folder),
else ``--storage URL``. A study remembers the search it was made for (experiment, space, metric,
direction) in its user attributes: running ``tune`` again with the same name continues it, and a
different space is refused with what differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from regfw.errors import RegfwError

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "grid")
PRUNERS = ("none", "median", "asha", "hyperband")
ATTR = "regfw.search"  # the study's user attribute holding what it searches
PARENT_ATTR = "regfw.parent_run_id"


def default_storage(uri: str) -> str:
    """``sqlite:///<store's folder>/optuna.db`` for a SQLite run store; a server store has no folder
    here, so it needs ``--storage``."""
    from regfw.store.uri import sqlite_path

    path = sqlite_path(uri)
    if path is None:
        raise RegfwError(f"the run store {uri} is not a SQLite file: give the study's storage with --storage URL "
                         "(e.g. sqlite:///optuna.db)")
    return f"sqlite:///{Path(path).resolve().parent / 'optuna.db'}"


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # regfw prints one line per trial itself


def make_sampler(name: str, seed: int | None, dims, *, batch: int = 1):
    """The sampler ``--sampler`` names. ``batch`` > 1: trials are asked several at a time (stacked),
    and TPE then treats the pending ones with ``constant_liar`` so they spread out."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=batch > 1, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        if any(d.kind == "choice" for d in dims):
            raise RegfwError("--sampler cmaes searches numbers only: a choice() dimension needs tpe, random or grid")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if name == "grid":
        return optuna.samplers.GridSampler(grid_values(dims), seed=seed)
    raise RegfwError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")


def grid_values(dims) -> dict:
    """``--sampler grid``: every choice, and every step of a stepped range; a continuous range has no grid."""
    out = {}
    for dim in dims:
        if dim.kind == "choice":
            out[dim.key] = list(dim.choices)
        elif dim.step is not None or dim.kind == "int":
            step = dim.step or 1
            count = int(round((dim.high - dim.low) / step)) + 1
            values = [dim.low + i * step for i in range(count) if dim.low + i * step <= dim.high + 1e-12]
            out[dim.key] = [int(v) for v in values] if dim.kind == "int" else [float(v) for v in values]
        else:
            raise RegfwError(f"--sampler grid needs a grid: give {dim.key} a step ({dim.kind}(LOW,HIGH,step=S)) "
                             "or make it a choice()")
    return out


def make_pruner(name: str, epochs: int, every: int):
    """The pruner ``--pruner`` names (None for none), for values reported every ``every`` epochs
    (the step Optuna is given is the epoch). The median pruner waits for a few trials and a
    quarter of the report points, so an early, noisy curve does not stop a good trial."""
    import optuna

    if name == "none":
        return None
    warmup = every * (max(1, epochs // every) // 4)  # in epochs, as the steps are
    if name == "median":
        return CompletedTrialsOnce(optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=warmup))
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise RegfwError(f"--pruner must be one of {', '.join(PRUNERS)}, got {name!r}")


class CompletedTrialsOnce:
    """The median pruner, reading the study's completed trials once until the next trial is told.

    Optuna's median pruner reads every completed trial from the storage at each report point of
    each trial (and its cached RDB storage then re-reads every running trial): 16 stacked trials
    reporting 20 times paid 320 SQLite reads of ~19 ms, a third of the search's time. Only this
    process tells the study (workers never open it), so the completed trials do not change between
    two tells: the list is read once and kept until :meth:`forget` (called on every tell) or for
    ``MAX_AGE`` seconds (another process continuing the same study). The decision is Optuna's own."""

    MAX_AGE = 2.0

    def __init__(self, inner):
        self.inner, self._completed, self._read_at = inner, None, 0.0

    def forget(self) -> None:
        self._completed = None

    def prune(self, study, trial) -> bool:
        return self.inner.prune(_StudyView(study, self), trial)

    def completed(self, study) -> list:
        import time

        from optuna.trial import TrialState

        if self._completed is None or time.monotonic() - self._read_at > self.MAX_AGE:
            self._completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            self._read_at = time.monotonic()
        return self._completed

    def __getattr__(self, name):  # what Optuna asks a pruner beyond prune()
        return getattr(self.inner, name)


class _StudyView:
    """A study as the wrapped pruner sees it: its completed trials from :class:`CompletedTrialsOnce`."""

    def __init__(self, study, owner: CompletedTrialsOnce):
        self._study, self._owner = study, owner

    def get_trials(self, deepcopy: bool = True, states=None):
        from optuna.trial import TrialState

        if not deepcopy and states is not None and tuple(states) == (TrialState.COMPLETE,):
            return self._owner.completed(self._study)
        return self._study.get_trials(deepcopy=deepcopy, states=states)

    def __getattr__(self, name):
        return getattr(self._study, name)


def open_study(storage_url: str, name: str, direction: str, sampler, pruner, search: dict):
    """Create the study, or load it and check that it searches the same thing."""
    import optuna

    from regfw.tune.space import space_difference

    if storage_url.startswith("sqlite:///"):  # a new store's folder does not exist yet
        Path(storage_url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        storage = optuna.storages.RDBStorage(storage_url)
    except Exception as exc:  # noqa: BLE001 - a URL Optuna cannot open: one line
        from regfw.errors import one_line

        raise RegfwError(f"cannot open the study storage {storage_url}: {one_line(exc)}") from None
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in existing:
        stored = existing[name].user_attrs.get(ATTR)
        if stored is None:
            raise RegfwError(f"study '{name}' in {storage_url} was not made by regfw tune; choose another --study")
        differs = []
        for field in ("experiment", "metric", "direction"):
            if stored.get(field) != search.get(field):
                differs.append(f"{field} was {stored.get(field)}, now {search.get(field)}")
        space = space_difference(stored.get("space", {}), search["space"])
        if space:
            differs.append(space)
        if differs:
            raise RegfwError(f"study '{name}' exists with another search ({'; '.join(differs)}): "
                             "give another --study name to start a new one")
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    else:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction=direction)
        study.set_user_attr(ATTR, search)
    return study


def close_running(study, reason: str) -> int:
    """End every trial this study still has RUNNING as FAIL (a run killed hard by a previous
    ``tune`` leaves one); the count."""
    import optuna

    closed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "regfw.failure", reason)
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            closed += 1
        except Exception:  # noqa: BLE001 - another process finished it meanwhile
            pass
    return closed


def search_record(experiment: str, dims, metric: str, direction: str) -> dict:
    from regfw.tune.space import space_record

    return {"experiment": experiment, "space": space_record(dims), "metric": metric, "direction": direction}


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
