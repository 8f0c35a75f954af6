"""The app ``mlflow server --app-name regfw`` serves (declared in MLflow's ``mlflow.app`` entry-point
group, as MLflow's own ``basic-auth`` app is): MLflow's Flask app with its index page served with
regfw's start-up script (page.py) and one more route, the presets that script asks for; wrapped
for uvicorn exactly as MLflow wraps its own.

It also watches the ``regfw ui`` that started it (pid in ``REGFW_UI_PARENT_PID``): a ``regfw ui``
killed with SIGKILL cannot stop its server, so the server stops itself, its whole process group,
when that process is gone.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time

PARENT_PID_ENV = "REGFW_UI_PARENT_PID"
POLL_SECONDS = 1.0  # where the kernel offers no pidfd: how often the parent is looked for
GRACE_SECONDS = 5.0  # SIGTERM to the group, then SIGKILL to what is left


def create_app(app=None):
    from flask import Response, jsonify, request, send_from_directory
    from mlflow.server import app as flask_app
    from mlflow.server.handlers import _add_static_prefix, _get_tracking_store

    from regfw.mlflow_ui import page, presets

    app = app or flask_app

    def serve():
        index = os.path.join(app.static_folder, "index.html")
        if not os.path.exists(index):
            return send_from_directory(app.static_folder, "index.html")  # MLflow's own 404
        with open(index, encoding="utf-8") as handle:
            html = page.with_script(handle.read())
        # Never cached: the script must run on every load, and MLflow's bundle names change per release.
        return Response(html, mimetype="text/html", headers={"Cache-Control": "no-store"})

    def preset():
        store = _get_tracking_store()
        try:
            if request.args.get("run"):
                return jsonify(presets.run_preset(store, request.args["run"]))
            if request.args.get("experiment"):
                return jsonify(presets.experiment_preset(store, request.args["experiment"]))
        except Exception:  # an unknown id, a deleted run: the page opens as MLflow's default
            return jsonify(None), 404
        return jsonify(None), 400

    app.view_functions["serve"] = serve  # MLflow's route for "/", now with the script
    app.add_url_rule(_add_static_prefix("/" + page.PRESET_PATH), "regfw_ui_preset", preset)
    watch_parent()

    from mlflow.environment_variables import _MLFLOW_SGI_NAME

    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app


def watch_parent() -> None:
    """End this server's process group once the process named by ``REGFW_UI_PARENT_PID`` exits."""
    raw = os.environ.get(PARENT_PID_ENV)
    if not raw:
        return  # started by hand (`mlflow server --app-name regfw`): nothing to watch
    pid = int(raw)
    threading.Thread(target=_watch, args=(pid,), name="regfw-ui-parent-watchdog", daemon=True).start()


def _watch(pid: int) -> None:
    try:
        # A pidfd refers to that very process: no race with a new process reusing the pid.
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fd = None  # already gone
    except (AttributeError, OSError):
        fd = -1  # no pidfd here: poll
    if fd is not None and fd >= 0:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll():
            pass
        os.close(fd)
    elif fd == -1:
        while _alive(pid):
            time.sleep(POLL_SECONDS)
    _end_group()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _end_group() -> None:
    group = os.getpgrp()
    if group != os.getsid(0):
        # Not the session `regfw ui` starts its server in: the group may be a shell's job.
        # End this process only.
        os.kill(os.getpid(), signal.SIGTERM)
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        time.sleep(GRACE_SECONDS)
