"""Conformance checks for the components a plugin registers: what ``regfw check`` runs.

Every component is built with its declared defaults and trained for two steps in a *context*
(:mod:`.contexts`, chosen by the :class:`Checker`): an experiment of the same plugin that uses it,
or else a small synthetic problem built from plain torch. Then the checks of :mod:`.checks` run
on it, and :mod:`.results` holds what they report.

A dataset that raises :class:`~regfw.errors.RegfwError` (data not downloaded, say) makes the
components that need it *skipped*, with its message: a missing file is the user's to fix, not a bug.
torch is imported inside the functions: importing this package stays cheap.
"""

from regfw.conformance.checker import Checker
from regfw.conformance.checks import check_component, check_registered
from regfw.conformance.results import CheckReport, ComponentResult, Failed, Skipped

__all__ = ["CheckReport", "Checker", "ComponentResult", "Failed", "Skipped", "check_component", "check_registered"]
