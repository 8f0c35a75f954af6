"""Driving a search: ask the study for trials, train them as sweep points, tell it each result.

The study is driven from this process by ask and tell (whatever trains the points never needs the
study's storage). Each trial is a child run of the study's parent run, with everything a sweep
point records plus its trial number and state; the parent carries the best value so far (a metric
stepped by trial number) and the best trial's run id (a tag). Ctrl-C or SIGTERM ends the running
trial KILLED in MLflow and FAIL in the study, and the parent KILLED: nothing is left RUNNING.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from regfw.interrupts import Interrupted, held, sigterm_as_interrupt
from regfw.store import tags as T

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}


@dataclass
class Search:
    """Everything ``regfw tune`` was asked, checked (see :mod:`regfw.tune.space`)."""

    experiment: str
    dims: list
    base: object  # the base Config: --set values, nothing searched
    sets: list  # --set texts (fixed values)
    resolve_kwargs: dict  # config_file, swaps, flags: as resolve() takes them
    metric: str
    direction: str
    sampler: str = "tpe"
    pruner: str = "none"
    seed: int | None = None
    trials: int | None = None
    timeout: float | None = None
    study: str = ""
    storage: str = ""
    report_every: int = 1
    stack: int = 1  # trials asked together and trained as one stacked program (--vectorize)
    jobs: int = 1  # worker processes (--jobs), or trials in flight at once on Ray
    ray: object = None  # a regfw.training.ray_cluster.RayOptions (--backend ray)

    @property
    def wave(self) -> int:
        """Trials asked together: a stack per worker (--vectorize), else one trial per worker."""
        return self.stack * self.jobs


@dataclass
class TuneResult:
    parent_run_id: str
    status: str
    trials: list = field(default_factory=list)
    best_number: int | None = None
    best_value: float | None = None
    best_run_id: str | None = None
    best_values: dict = field(default_factory=dict)
    exit_code: int = 0


def curve_of(metric: str) -> str | None:
    """The curve whose intermediate values stand for ``metric`` (final_test_loss -> test_loss)."""
    for prefix in ("final_", "best_"):
        if metric.startswith(prefix):
            return metric[len(prefix):]
    return None


def objective_metrics(base, data) -> list[str]:
    """The plain metric names a run of ``base`` records, for --metric."""
    curves = ["train_loss"] + (["test_loss"] if data.has_test else [])
    if "accuracy" in base.train["metrics"]:
        curves += ["train_accuracy"] + (["test_accuracy"] if data.has_test else [])
    return [f"{p}{c}" for c in curves for p in ("final_", "best_")] + ["train_seconds"]


class ReportPoints:
    """Where a trial's intermediate values are taken and what they are: the value of ``curve`` (or its
    best so far) every ``every`` epochs and at the last. Picklable: a worker takes them too."""

    def __init__(self, curve: str, every: int, epochs: int, best: bool, maximize: bool):
        self.curve, self.every, self.epochs, self.best, self.maximize = curve, every, epochs, best, maximize

    def value(self, epoch: int, history, recorder) -> float | None:
        """The intermediate value after ``epoch``, or None (not a report point, or not finite)."""
        if epoch % self.every and epoch != self.epochs:
            return None
        recorder.drain()  # the values of this epoch leave the device now: one sync per report point
        points = history.curves.get(self.curve)
        if not points or points[-1][0] != epoch or not math.isfinite(points[-1][1]):
            return None
        if not self.best:
            return points[-1][1]
        values = [v for _, v in points]
        return max(values) if self.maximize else min(values)


class Reporting:
    """A trial's watch: its intermediate values at its report points, and the pruner's verdict on
    them. A trial trained in a worker reaches :meth:`judge` through ``regfw.training.reports``."""

    def __init__(self, trial, points: ReportPoints, prune: bool):
        self.trial, self.points, self.prune = trial, points, prune

    def judge(self, epoch: int, value: float) -> bool:
        """Report ``value`` at ``epoch`` to the study; whether the pruner stops the trial there."""
        self.trial.report(value, epoch)
        return self.prune and epoch < self.points.epochs and self.trial.should_prune()

    def __call__(self, epoch: int, history, recorder) -> None:
        from regfw.runner import Pruned

        value = self.points.value(epoch, history, recorder)
        if value is not None and self.judge(epoch, value):
            raise Pruned(epoch)


def run_command(search: Search, values: dict, extra: list[str]) -> str:
    """The ``regfw run`` command line that repeats a trial."""
    import shlex

    words = ["regfw", "run", search.experiment] + list(extra)
    for text in list(search.sets) + [dim.as_set(values[dim.key]) for dim in search.dims]:
        words += ["--set", text]
    return " ".join(shlex.quote(w) for w in words)


def run_search(search: Search, registry, uri: str, experiment_name: str, *, reporter=None,
               on_trial=None, on_plan=None) -> TuneResult:
    """Open (or continue) the study, run its trials, close the parent; see the module's docstring."""
    import optuna

    from regfw.tune import study as S
    from regfw.tune.parent import Parent

    S.quiet_optuna()
    sampler = S.make_sampler(search.sampler, search.seed, search.dims, batch=search.wave)
    epochs = search.base.train["epochs"]
    pruner = S.make_pruner(search.pruner, epochs, search.report_every)
    record = S.search_record(search.experiment, search.dims, search.metric, search.direction)
    study = S.open_study(search.storage, search.study, search.direction,
                         sampler, pruner if pruner is not None else optuna.pruners.NopPruner(), record)
    S.close_running(study, "its tune process ended without closing it")
    distributions = {d.key: d.distribution() for d in search.dims}
    limit = search.trials
    if search.sampler == "grid":
        size = math.prod(len(v) for v in S.grid_values(search.dims).values())
        done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        limit = min(limit if limit is not None else size, max(0, size - done))

    if search.ray is not None:  # reached and checked before the parent run exists; left at the end
        from types import SimpleNamespace

        from regfw.training.ray_cluster import connect

        search.ray.keep = True
        connect(search.ray, uri, [SimpleNamespace(config=search.base)])
    try:
        parent = Parent(uri, experiment_name)
        parent_id = parent.open(study, search)
    except BaseException:
        _leave_ray(search)
        raise
    result = TuneResult(parent_id, "FINISHED")
    _note_best(study, result)
    pending: dict[int, object] = {}  # asked, not yet told: told FAIL if the search stops
    interrupted: BaseException | None = None
    deadline = None if search.timeout is None else time.monotonic() + search.timeout
    curve = curve_of(search.metric)

    orphans: list = []  # trials whose worker died: told once the wave's pool has stopped every worker

    def tell(trial, tr) -> None:
        if tr.state == "failed" and not tr.run_id and tr.error:  # its worker died mid-run
            # Settled after the wave: the pool stops the other workers when one dies, and a run
            # such a worker is still ending (KILLED) must not overwrite the FAILED settled here.
            orphans.append((trial, tr))
            return
        told(trial, tr)

    def settle_orphans() -> None:
        while orphans:
            trial, tr = orphans.pop(0)
            tr.run_id = parent.settle_orphan(trial.number, tr.error)
            told(trial, tr)

    def told(trial, tr) -> None:
        with held() as late:  # the study and MLflow must agree on how the trial ended
            state = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
                     "failed": optuna.trial.TrialState.FAIL}[tr.state]
            if tr.run_id:
                trial.set_user_attr("regfw.run_id", tr.run_id)
            if tr.error:
                trial.set_user_attr("regfw.failure", tr.error[:1000])
            study.tell(trial, tr.value if tr.state == "complete" else None, state=state)
            if callable(getattr(pruner, "forget", None)):
                pruner.forget()  # the completed trials it read changed
            pending.pop(trial.number, None)
            if tr.run_id:
                tags = {T.TRIAL_STATE: tr.state}
                if tr.pruned_at is not None:
                    tags[T.PRUNED_AT] = tr.pruned_at
                parent.tag_child(tr.run_id, tags)
            result.trials.append(tr)
            if tr.state == "complete" and _note_best(study, result):
                parent.best(result.best_number, result.best_value, result.best_run_id)
        if on_trial is not None:
            on_trial(tr)
        late.deliver()

    from regfw.tune.execute import refillable, train_trials

    try:
        from regfw.build import shared_data

        with sigterm_as_interrupt(), shared_data():  # trials of one seed build their data once
            asked = 0
            refilling = refillable(search)

            def ask(n: int) -> list:
                """Up to ``n`` new trials, within --trials and --timeout."""
                nonlocal asked
                if deadline is not None and time.monotonic() >= deadline:
                    return []
                trials = []
                for _ in range(n if limit is None else min(n, limit - asked)):
                    with held() as late:
                        trial = study.ask(distributions)
                        pending[trial.number] = trial
                    late.deliver()
                    trials.append(trial)
                asked += len(trials)
                return trials

            while (limit is None or asked < limit) and (deadline is None or time.monotonic() < deadline):
                trials = ask(search.wave)
                watch = None
                if curve is not None:  # stacked too: each member reports its own values as they come
                    points = ReportPoints(curve, search.report_every, epochs, search.metric.startswith("best_"),
                                          search.direction == "maximize")
                    watch = lambda trial: Reporting(trial, points, pruner is not None)  # noqa: E731
                interrupted = train_trials(search, registry, trials, uri, experiment_name, parent_id, tell,
                                           watch=watch, reporter=reporter, on_plan=on_plan,
                                           ask_more=ask if refilling else None)
                settle_orphans()
                if interrupted is not None:
                    break
    except (KeyboardInterrupt, Interrupted) as exc:
        interrupted = exc
    finally:
        try:
            settle_orphans()  # a wave stopped by Ctrl-C still settles the runs its dead workers left
        except Exception:  # noqa: BLE001 - the store went away: the trials are told FAIL below
            pass
        with held():
            for trial in list(pending.values()):
                try:
                    trial.set_user_attr("regfw.failure", "interrupted")
                    study.tell(trial, None, state=optuna.trial.TrialState.FAIL)
                except Exception:  # noqa: BLE001 - told meanwhile
                    pass
            counts = {s: sum(t.state == s for t in result.trials) for s in STATES.values()}
            result.status = "KILLED" if interrupted is not None else "FINISHED"
            end_tags = {f"regfw.study_{s}": n for s, n in counts.items()}
            if interrupted is not None:
                end_tags[T.FAILURE] = "interrupted"
            try:
                parent.end(result.status, end_tags)
            finally:
                _leave_ray(search)
    if interrupted is not None:
        result.exit_code = getattr(interrupted, "exit_code", 130)
    return result


def _leave_ray(search: Search) -> None:
    if search.ray is not None:
        import ray

        ray.shutdown()


def _note_best(study, result: TuneResult) -> bool:
    """Update ``result`` from the study's best trial; True when it changed."""
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return False
    if best.number == result.best_number:
        return False
    result.best_number, result.best_value = best.number, best.value
    result.best_run_id, result.best_values = best.user_attrs.get("regfw.run_id"), dict(best.params)
    return True
