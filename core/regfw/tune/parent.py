"""A study's MLflow parent run: its params and tags, the best trial so far, its trials' states.

Created once per study and RUNNING again when the study is continued (:func:`regfw.tune.search.run_search`);
a run that a dead worker left RUNNING is settled here.
"""

from __future__ import annotations

from regfw.store import tags as T


class Parent:
    """The study's MLflow parent run: created once per study, RUNNING again when it is continued."""

    def __init__(self, uri: str, experiment_name: str):
        from regfw.store import MlflowTracker

        self.uri, self.experiment_name = uri, experiment_name
        self.tracker = MlflowTracker(uri, experiment_name).open()

    def open(self, study, search) -> str:
        from regfw.tune.study import PARENT_ATTR

        known = study.user_attrs.get(PARENT_ATTR)
        tags = {"regfw.tune_sampler": search.sampler, "regfw.tune_pruner": search.pruner,
                 "regfw.tune_seed": "" if search.seed is None else search.seed}
        if known and self._exists(known):
            self.tracker.attach(known, tags)
            return known
        params = {"tune.study": search.study, "tune.storage": search.storage, "tune.metric": search.metric,
                  "tune.direction": search.direction, "tune.sampler": search.sampler, "tune.pruner": search.pruner}
        params |= {f"tune.space.{d.key}": d.text for d in search.dims}
        params |= {k: v for k, v in search.base.flat_params().items() if k not in {d.key for d in search.dims}}
        run_id = self.tracker.start(f"{search.experiment} study {search.study}", params, tags | {
            T.ROLE: T.ROLE_STUDY, T.STUDY: search.study, T.STUDY_STORAGE: search.storage,
            T.STUDY_METRIC: search.metric, T.STUDY_DIRECTION: search.direction, T.EXPERIMENT: search.experiment,
            T.NOTE: f"regfw tune study {search.study}: {search.metric} ({search.direction}) over "
                    + ", ".join(f"{d.key}={d.text}" for d in search.dims),
            T.RUN_COLOR: T.PARENT_COLOR})
        study.set_user_attr(PARENT_ATTR, run_id)
        return run_id

    def _exists(self, run_id: str) -> bool:
        try:
            run = self.tracker.mlflow().get_run(run_id)
        except Exception:  # noqa: BLE001 - deleted, or another store: start a new parent
            return False
        return run.info.lifecycle_stage == "active" and run.info.experiment_id == str(self.tracker.experiment_id)

    def best(self, number: int, value: float, run_id: str | None) -> None:
        self.tracker.log_metrics([("best_value", value, number)])
        self.tracker.set_tags({T.STUDY_BEST_RUN: run_id or "", "regfw.study_best_trial": number})
        self.tracker.flush()

    def settle_orphan(self, number: int, reason: str) -> str | None:
        """The run a dead worker left RUNNING for trial ``number`` ends FAILED with ``reason``; its id.

        A run that ended KILLED is settled too: when one worker dies, the pool stops the others, and
        their trials (told FAIL with this reason) must not read "interrupted" in MLflow as if the
        user had stopped them. (A user's Ctrl-C never comes here: it stops the search.)"""
        client = self.tracker.mlflow()
        try:
            runs = [run for run in client.search_runs([str(self.tracker.experiment_id)], max_results=5, filter_string=(
                f"tags.`{T.PARENT}` = '{self.tracker.run_id}' and tags.`{T.TRIAL}` = '{number}'"))
                if run.info.status in ("RUNNING", "KILLED")]
            for run in runs:
                client.set_tag(run.info.run_id, T.FAILURE, reason)
                client.set_terminated(run.info.run_id, "FAILED")
        except Exception:  # noqa: BLE001 - the store went away: the trial's own record still says why
            return None
        return runs[0].info.run_id if runs else None

    def tag_child(self, run_id: str, tags: dict) -> None:
        from regfw.store import MlflowTracker

        child = MlflowTracker(self.uri, self.experiment_name).share_from(self.tracker)
        child.run_id = run_id
        child.set_tags(tags)

    def end(self, status: str, tags: dict) -> None:
        try:
            self.tracker.set_tags(tags)
        finally:
            self.tracker.end(status)
