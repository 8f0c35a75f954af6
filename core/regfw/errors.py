"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""

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
