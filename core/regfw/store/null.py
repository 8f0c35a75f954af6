"""``--no-track``: a tracker with :class:`regfw.store.tracker.MlflowTracker`'s interface that writes nothing."""

from __future__ import annotations


class NullTracker:
    """``--no-track``: the same interface, nothing written."""

    recording = False
    run_id = None
    uri = None
    gone = None

    def open(self):
        return self

    def start(self, run_name, params, tags):
        return None

    def attach(self, run_id, tags, metrics=()):
        return {}

    def log_metrics(self, rows):
        pass

    def flush(self):
        pass

    def set_tags(self, tags):
        pass

    def artifact_folder(self):
        return None

    def log_artifacts(self, folder, artifact_path=None):
        pass

    def log_artifact(self, path, artifact_path=None):
        pass

    def log_input(self, source, context="train"):
        pass

    def end(self, status):
        pass

    def end_quietly(self, status, reason=None):
        pass
