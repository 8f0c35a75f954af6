"""A bucket's points built as their single runs build them, and their child runs started.

Shared by a bucket's start (:func:`regfw.vectorize.bucket_run.run_bucket`) and by the trials that
join a search's running stack later (:class:`regfw.vectorize.members.Joining`).
"""

from __future__ import annotations

from regfw.errors import RegfwError
from regfw.interrupts import held
from regfw.store import tags as T
from regfw.training.points import build_failure, point_tracker


def bucket_tag(number: int, size: int) -> str:
    return f"bucket {number}, {size} points"


def build_points(tasks, registry, record) -> tuple[list, list]:
    """Each point's RunState; a point that cannot be built fails alone, before its run exists."""
    from regfw.build import build_state
    from regfw.device import resolve_device

    built = []
    for task in tasks:
        try:
            built.append((task, build_state(task.config, registry, resolve_device(task.config.device))))
        except RegfwError as exc:
            record(build_failure(task, str(exc)))
    return [t for t, _ in built], [s for _, s in built]


def start_runs(tasks, states, plugins, size: int, number: int, share=None, joined_at: int = 0, base=None) -> list:
    from regfw.provenance import run_tags

    base = base or run_tags(states[0].config, plugins, states[0].device)  # one git call for the bucket
    trackers = []
    for task, state in zip(tasks, states):
        joined = {T.JOINED_AT: joined_at} if joined_at else {}  # a search's refill: the stack's step it joined at
        tracker = point_tracker(task, {T.BUCKET: bucket_tag(number, size)} | joined)
        if share is not None and share.recording and tracker.recording:
            tracker.share_from(share)
        elif trackers and tracker.recording:  # one connection for the bucket
            tracker.share_from(trackers[0])
        else:
            tracker.open()
        trackers.append(tracker)
        tags = base | {T.SEED: state.config.seed} | state.data.tags
        with held() as signals:  # a signal while the run is created: it exists first, then ends KILLED
            tracker.start(task.run_name, state.config.flat_params(), tags)
            if state.data.source:
                tracker.log_input(state.data.source)
        signals.deliver()
    return trackers
