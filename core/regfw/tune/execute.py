"""Training a batch of asked trials: each one a sweep point, run the way sweep points run.

One after another here (``regfw.sweep.points.run_point``); a stacked program (``--vectorize``)
is not built yet. Every trial's result is handed to ``tell``
as soon as it is known, and the interrupt that stopped the batch (or None) is returned.
"""

from __future__ import annotations


def train_trials(search, registry, trials, uri: str, experiment_name: str, parent_id: str, tell, *,
                 watch=None, reporter=None, on_plan=None):
    from regfw.sweep.points import run_point, stop_after
    from regfw.tune.search import TrialResult, trial_result, trial_task

    tasks = []
    for trial in trials:
        task, error = trial_task(search, registry, trial, uri, experiment_name, parent_id)
        if task is None:  # a combination the components refuse (a choice with a bound, say)
            tell(trial, TrialResult(trial.number, "failed", dict(trial.params), error=error))
        else:
            tasks.append((trial, task))
    for trial, task in tasks:
        point = run_point(task, reporter, watch=watch(trial) if watch is not None else None)
        tell(trial, trial_result(search, trial, point))
        stopped = stop_after(point)
        if stopped is not None:
            return stopped
    return None
