"""The start times of the runs this process creates: strictly increasing, one millisecond apart
at the least.

Why: MLflow lists runs by start time, newest first, ties broken by run id (random). A stacked
bucket creates its points' runs within the same millisecond, and a fast sweep two points in one,
so its children listed in a random order (6,7,5,3,4,2,1,0). With each run a millisecond at least
after the one this process created before it, a sweep's children list in point order, the last
point on top; a start time moves by at most a millisecond a run, and only when runs really were
created within the same one.

``--jobs`` workers are separate processes that start points at the same moment: there the sweep
shares one slot per point (:func:`share`), and a point's run is created once the runs of the
points before it exist (a wait of the difference in their build times, since the pool hands
points out in order), a millisecond at least after the latest of them.
"""

from __future__ import annotations

import contextlib
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_slots = None  # --jobs: a shared array, one start time per point index (0: not yet, -1: no run)
_point: int | None = None  # the index of the point this worker is running
WAIT_SECONDS = 60.0  # at most this long for the points before: a stuck one must not stop the sweep


def next_start_ms(not_before: int = 0) -> int:
    """Now in milliseconds since the epoch, or one after the previous start this process handed
    out (or ``not_before``), whichever is later."""
    global _last_ms
    with _lock:
        if _slots is not None and _point is not None:
            not_before = max(not_before, _after_earlier_points(_point) + 1)
        _last_ms = max(int(time.time() * 1000), _last_ms + 1, not_before)
        if _slots is not None and _point is not None:
            _slots[_point] = _last_ms
        return _last_ms


def _after_earlier_points(index: int) -> int:
    """Wait until every point before ``index`` has its run (or will have none); their latest start."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        earlier = list(_slots[:index])
        if all(earlier) or time.monotonic() > deadline:
            return max(earlier, default=0)
        time.sleep(0.005)


def share(slots) -> None:
    """In a ``--jobs`` worker: the sweep's shared slots (a ``multiprocessing.Array`` of int64)."""
    global _slots
    _slots = slots


@contextlib.contextmanager
def point(index: int):
    """The runs created inside are point ``index``'s; at the end, a point that created none frees
    the points after it from waiting for it."""
    global _point
    _point = index
    try:
        yield
    finally:
        _point = None
        if _slots is not None and 0 <= index < len(_slots) and _slots[index] == 0:
            _slots[index] = -1
