"""The one exception type that the CLI turns into a one-line message and a non-zero exit, and its helpers."""

import difflib


class RegfwError(Exception):
    """A problem the user can fix: bad input, a missing device, missing data, a broken plugin."""


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, else ``; choose from: ...``."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if not choices:
        return "; none is registered"
    return "; choose from: " + ", ".join(choices)


def one_line(exc: BaseException) -> str:
    """``Type: message`` squeezed onto one line and cut at 200 characters, for one-line reports."""
    text = squeeze(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def squeeze(text: str, limit: int = 200) -> str:
    """``text`` on one line (runs of whitespace become one space), cut at ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def show(value) -> str:
    """repr() cut short: an error line must stay one readable line whatever was typed."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
