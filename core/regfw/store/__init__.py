"""The MLflow run record: tag names, where the store is, opening a client, and writing a run.

Every other module talks to MLflow only through the names exported here.
"""

from regfw.store import keys, tags
from regfw.store.client import experiment_id, is_missing, open_client, param_text, same_param
from regfw.store.null import NullTracker
from regfw.store.tracker import MlflowTracker
from regfw.store.uri import (
    STORE_DIR,
    check_reachable,
    default_tracking_uri,
    quiet_libraries,
    sqlite_path,
    store_error,
    store_lock,
    tracking_uri,
)

__all__ = [
    "keys", "tags", "experiment_id", "is_missing", "open_client", "param_text", "same_param", "MlflowTracker", "NullTracker",
    "STORE_DIR", "check_reachable", "default_tracking_uri", "quiet_libraries", "sqlite_path", "store_error",
    "store_lock", "tracking_uri",
]
