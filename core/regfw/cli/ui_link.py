"""The closing line of ``regfw run`` and ``regfw sweep``: the run's own page in a UI that serves its
store now (:mod:`regfw.ui_address`), else the command that starts one."""

from __future__ import annotations

from regfw.cli.ui import VIEW
from regfw.ui_address import ui_base


def run_link(base: str, experiment_id: str, run_id: str) -> str:
    """A run's own page, opened in the runs (Model training) view, as ``regfw ui``'s links are."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}{VIEW}"


def where_to_look(uri: str, experiment_id: str | None, run_id: str) -> str:
    """The closing line of ``regfw run`` / ``regfw sweep``: the run's page when a UI serves the
    store, else the command that starts one."""
    from regfw.store import default_tracking_uri

    base = ui_base(uri) if experiment_id is not None else None
    if base is not None:
        return f"open it: {run_link(base, experiment_id, run_id)}"
    where = "" if uri == default_tracking_uri() else f" --tracking-uri '{uri}'"
    return f"open it with: regfw ui{where}"
