"""The start times of the runs this process creates: strictly increasing, one millisecond apart
at the least.

Why: MLflow lists runs by start time, newest first, ties broken by run id (random). A stacked
bucket creates its points' runs within the same millisecond, and a fast sweep two points in one,
so its children listed in a random order (6,7,5,3,4,2,1,0). With each run a millisecond at least
after the one this process created before it, a sweep's children list in point order, the last
point on top; a start time moves by at most a millisecond a run, and only when runs really were
created within the same one.
"""

from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_last_ms = 0


def next_start_ms(not_before: int = 0) -> int:
    """Now in milliseconds since the epoch, or one after the previous start this process handed
    out (or ``not_before``), whichever is later."""
    global _last_ms
    with _lock:
        _last_ms = max(int(time.time() * 1000), _last_ms + 1, not_before)
        return _last_ms
