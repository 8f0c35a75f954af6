"""Signals while a run is being opened, written to or closed.

Ctrl-C (SIGINT) and SIGTERM end a run as KILLED, but only where the runner can still write that
down. While the MLflow run is being created, while a batch of metrics or a checkpoint is being
written, and while the final metrics, artifacts and status are written, the signals are held
back and sent again afterwards (dropped when the run is already ending): a signal cannot tear a
write in half, and a second Ctrl-C cannot leave a run marked RUNNING forever.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


class Interrupted(BaseException):
    """Raised from a SIGTERM handler so the run ends like a Ctrl-C: flushed and KILLED.

    A BaseException, like KeyboardInterrupt: library code that catches ``Exception`` (MLflow
    wraps every store error) must not turn a termination into a failure."""

    def __init__(self, exit_code: int = 143):
        super().__init__("terminated")
        self.exit_code = exit_code


def terminate_handler(signum, frame):
    """SIGTERM handler: end the run like a Ctrl-C, with exit code 128 + signal (143)."""
    raise Interrupted(128 + signum)


class Held:
    """The signals that arrived while held back (the first one counts)."""

    def __init__(self):
        self.signals: list[int] = []

    @property
    def first(self) -> int | None:
        return self.signals[0] if self.signals else None

    def deliver(self) -> None:
        """Send the held signal again, now that the handlers are back: whatever handles it then
        (the runner's, an outer :func:`held`, or the default action) does what it would have done."""
        if self.signals:
            signal.raise_signal(self.signals[0])


@contextlib.contextmanager
def held():
    """Hold SIGINT and SIGTERM back inside the block (main thread only; elsewhere a no-op)."""
    record = Held()
    if threading.current_thread() is not threading.main_thread():
        yield record
        return
    previous = {}

    def hold(signum, frame):
        record.signals.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, hold)
    try:
        yield record
    finally:
        for signum, handler in previous.items():
            # None: a handler installed outside Python, which cannot be put back; the default is closest.
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block, SIGTERM ends the work like a Ctrl-C (:class:`Interrupted`, exit 143);
    the previous handler is back afterwards. Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminate_handler)
    try:
        yield
    finally:
        # A block that chose to ignore SIGTERM for the rest of the process (a torchrun rank whose
        # run is recorded: the launcher's SIGTERM must not surface later inside a garbage-collection
        # callback as a stray traceback) keeps it ignored.
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def redeliver_lost_interrupts() -> None:
    """Send again a Ctrl-C or SIGTERM that Python would drop.

    Python runs signal handlers between bytecodes, also inside garbage-collection callbacks
    (weakref callbacks such as SQLAlchemy's class registry, ``__del__``). An exception raised
    there cannot propagate: Python prints it as "Exception ignored in ..." with a traceback and
    drops it, so the interrupt is lost and a traceback reaches the user (seen in a torchrun rank
    SIGTERMed by its launcher). This hook raises such a signal again; its handler then runs in
    ordinary code and the interrupt takes its normal way. Other unraisable errors go to the
    previous hook."""
    previous = sys.unraisablehook
    main = threading.main_thread().ident

    def send_later(signum: int) -> None:
        # From another thread, a moment later: sent from here, its handler would run inside this
        # hook (still within the callback) and be dropped again.
        timer = threading.Timer(0.01, signal.pthread_kill, (main, signum))
        timer.daemon = True
        timer.start()

    def hook(unraisable):
        error = unraisable.exc_value
        if isinstance(error, Interrupted) and getattr(error, "exit_code", 0) > 128:
            send_later(error.exit_code - 128)
        elif isinstance(error, KeyboardInterrupt):
            send_later(signal.SIGINT)
        else:
            previous(unraisable)

    sys.unraisablehook = hook
