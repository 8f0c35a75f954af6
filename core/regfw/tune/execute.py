"""Training a wave of asked trials: each one a sweep point, handed to the execution layer.

:func:`regfw.training.train_points` trains them as sweep points train: one after another, in
``--jobs`` worker processes, as Ray tasks, or, with ``--vectorize``, as stacked buckets planned by
the vectorized sweep's planner (``regfw.vectorize.plan_buckets``): a trial that cannot share a
stack (a searched model size, say) runs alone the normal way, with the planner's reason shown.
Every trial's result is handed to ``tell`` as soon as it is known, and the interrupt that stopped
the wave (or None) is returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from regfw.errors import RegfwError
from regfw.store import tags as T


@dataclass
class TrialResult:
    number: int
    state: str  # complete | pruned | failed
    values: dict
    run_id: str | None = None
    value: float | None = None
    error: str | None = None
    seconds: float = 0.0
    pruned_at: int | None = None
    bucket: str = ""


def refillable(search) -> bool:
    """Trials asked as others end can take their place: in ``--jobs`` workers or on Ray, one trial
    at a time, whatever is searched; in a stack (in this process), when every searched key is one a
    stack holds per row (the seed, a numeric optimizer value: :func:`regfw.vectorize.buckets.group_key`
    leaves them out). Stacks in workers go in waves."""
    elsewhere = search.jobs > 1 or search.ray is not None
    if search.stack < 2:
        return elsewhere
    if elsewhere:
        return False

    def per_row(dim) -> bool:
        if dim.key == "seed":
            return True
        section, _, name = dim.key.partition(".")
        if section != "optimizer" or isinstance(search.base.optimizer.params.get(name), bool):
            return False
        if dim.kind == "choice":
            return all(_is_number(text) for text in dim.choices)
        return isinstance(search.base.optimizer.params.get(name), (int, float))

    return all(per_row(dim) for dim in search.dims)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "+inf")


def train_trials(search, registry, trials, uri: str, experiment_name: str, parent_id: str, tell, *,
                 watch=None, reporter=None, on_plan=None, ask_more=None):
    """Hand a wave of asked trials to the execution layer (:func:`regfw.training.train_points`) the
    way ``search`` says (here, ``--jobs``, Ray, stacked), telling each trial as its point ends.
    ``ask_more(n)`` (:func:`refillable`): up to n more trials, asked as trials end (a stack's rows, a
    worker's trial), to take their place."""
    from regfw.training.points import NOT_RUN
    from regfw.training import Ways, train_points

    tasks = []
    for trial in trials:
        task, error = trial_task(search, registry, trial, uri, experiment_name, parent_id)
        if task is None:  # a combination the components refuse (a choice with a bound, say)
            tell(trial, TrialResult(trial.number, "failed", dict(trial.params), error=error))
        else:
            tasks.append((trial, task))
    if not tasks:
        return None
    by_number = {task.index: trial for trial, task in tasks}

    def record(point) -> None:
        if point.status != NOT_RUN:  # a trial never started is told FAIL by the search's end
            trial = by_number[point.index]
            tell(trial, trial_result(search, trial, point))

    ways = Ways(jobs=search.jobs, ray=search.ray, reporter=reporter if search.jobs == 1 else None)
    if search.stack > 1 and len(tasks) > 1:
        ways.plan, ways.on_fallback = _plan(search, registry, tasks, on_plan, refilled=ask_more is not None)
    if watch is not None:  # trials trained elsewhere ask this process at their report points
        ways.watches = {task.index: watch(trial) for trial, task in tasks}
    if ask_more is not None and (ways.plan is not None) != bool(ways.where()):  # see refillable()
        def refill(n: int) -> list:
            joining = []
            for trial in ask_more(n):
                task, error = trial_task(search, registry, trial, uri, experiment_name, parent_id)
                if task is None:
                    tell(trial, TrialResult(trial.number, "failed", dict(trial.params), error=error))
                    continue
                by_number[task.index] = trial
                joining.append((task, watch(trial) if watch is not None else None))
            return joining

        ways.refill, ways.rows = refill, search.stack
    return train_points([task for _, task in tasks], record, ways)


def _plan(search, registry, tasks, on_plan, refilled: bool = False):
    """The wave's stacked buckets (the vectorized sweep's planner) and the fallback's message."""
    from regfw.sweep.grid import Point
    from regfw.vectorize import plan_buckets

    points = [Point(task.index, dict(trial.params), task.config, task.run_name) for trial, task in tasks]
    plan = plan_buckets(points, registry, max_bucket=search.stack, jobs=search.jobs)
    if on_plan is not None:
        sizes = [len(b) for b in plan.buckets]
        on_plan(f"stacked: {sum(sizes)} of {len(points)} trials in {len(sizes)} program"
                f"{'s' * (len(sizes) != 1)}" + (f" of {', '.join(map(str, sizes))}" if sizes else ""))
        if refilled and sizes:
            on_plan(f"  refilled: a new trial takes each row as its trial ends, up to {search.stack} at once")
        for reason, positions in plan.reasons().items():
            numbers = ",".join(str(points[p].index) for p in positions)
            on_plan(f"  alone, trial{'s' * (len(positions) != 1)} {numbers}: {reason}")

    def fallback(indices, reason) -> None:
        if on_plan is not None:
            on_plan(f"  not stacked after building, trials {','.join(map(str, indices))}: {reason}")

    return plan, fallback


def config_for(search: Search, registry, values: dict):
    from regfw.config import parse_set, resolve

    texts = list(search.sets) + [dim.as_set(values[dim.key]) for dim in search.dims]
    return resolve(registry, search.experiment, sets=parse_set(texts), **search.resolve_kwargs)


def trial_name(search, number: int, values: dict) -> str:
    """``trial 3 lr=0.00125 momentum=0.847``: the number and the searched values, short."""
    shown = [f"{k.rsplit('.', 1)[-1]}={f'{v:.3g}' if isinstance(v, float) else v}" for k, v in values.items()]
    return " ".join([f"trial {number}"] + shown)


def trial_task(search, registry, trial, uri: str, experiment_name: str, parent_id: str):
    """A trial as a sweep point (:class:`regfw.training.points.PointTask`), or the reason it cannot be one."""
    from regfw.training.points import PointTask

    try:
        config = config_for(search, registry, trial.params)
    except RegfwError as exc:
        return None, str(exc)
    tags = {T.PARENT: parent_id, T.STUDY: search.study, T.TRIAL: trial.number, T.TRIAL_STATE: "running",
            T.RUN_COLOR: T.point_color(trial.number)}
    return PointTask(trial.number, config, trial_name(search, trial.number, trial.params), uri,
                     experiment_name, tags), None


def trial_result(search, trial, point) -> TrialResult:
    """What a trained point means to the study."""
    tr = TrialResult(trial.number, "failed", dict(trial.params), point.run_id, error=point.error,
                     seconds=point.seconds, pruned_at=point.pruned_at)
    if point.status == "FINISHED" and point.pruned_at is not None:
        tr.state = "pruned"
    elif point.status == "FINISHED":
        value = point.summary.get(search.metric)
        if value is None or not math.isfinite(value):
            tr.error = f"the run recorded no finite {search.metric}"
        else:
            tr.state, tr.value = "complete", float(value)
    elif point.status == "KILLED":
        tr.error = point.error or "interrupted"
    return tr
