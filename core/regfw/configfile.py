"""Reading a ``--config`` YAML file through regfw's guarded reader (:mod:`regfw.files`).

``--config`` names a file the user typed, maybe the wrong one: a FIFO, a device, a huge file or a
YAML alias bomb must be one line of error, fast, never a hang or gigabytes of memory.
"""

from __future__ import annotations

from pathlib import Path

from regfw.errors import RegfwError
from regfw.files import MAX_YAML_NODES, load_yaml

MAX_CONFIG_BYTES = 1_000_000  # `regfw show` prints about 1 kB; a megabyte is no configuration
MAX_CONFIG_NODES = MAX_YAML_NODES


def load_config_file(path: str | Path) -> dict:
    """Read a ``--config`` YAML file (same shape as ``regfw show``) with the safe loader: a regular
    file of at most :data:`MAX_CONFIG_BYTES`, at most :data:`MAX_CONFIG_NODES` values with every
    alias expanded."""
    data = load_yaml(path, "config file", MAX_CONFIG_BYTES, "a configuration is at most", MAX_CONFIG_NODES)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RegfwError(f"config file {path} must hold a mapping (like `regfw show` prints), got {type(data).__name__}")
    return data
