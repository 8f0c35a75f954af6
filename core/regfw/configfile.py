"""Reading a ``--config`` YAML file, within bounds: a regular file, a size cap, aliases counted.

``--config`` names a file the user typed, maybe the wrong one: a FIFO, a device, a huge file or a
YAML alias bomb must be one line of error, fast, never a hang or gigabytes of memory.
"""

from __future__ import annotations

from pathlib import Path

from regfw.errors import RegfwError

MAX_CONFIG_BYTES = 1_000_000  # `regfw show` prints about 1 kB; a megabyte is no configuration
MAX_CONFIG_NODES = 100_000  # values once aliases are expanded: bounds a YAML alias bomb


def load_config_file(path: str | Path) -> dict:
    """Read a ``--config`` YAML file (same shape as ``regfw show``) with the safe loader.

    Only a regular file of at most :data:`MAX_CONFIG_BYTES` is read (a FIFO would block, a
    device never ends), and its values, counted with every ``*alias`` expanded, must stay under
    :data:`MAX_CONFIG_NODES`: a few hundred bytes of nested aliases would otherwise take minutes
    and gigabytes to walk."""
    import stat

    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise RegfwError(f"config file not found: {path}") from None
    except OSError as exc:
        raise RegfwError(f"cannot read config file {path}: {exc.strerror or type(exc).__name__}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise RegfwError(f"config file {path} is {kind}: give a YAML file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise RegfwError(f"config file {path} is {info.st_size} bytes; a configuration is at most "
                         f"{MAX_CONFIG_BYTES} bytes")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)  # the file may grow after stat
        if len(raw) > MAX_CONFIG_BYTES:
            raise RegfwError(f"config file {path} is over {MAX_CONFIG_BYTES} bytes")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegfwError(f"cannot read config file {path}: {type(exc).__name__}") from None
    return _parse_config(text, path)


def _parse_config(text: str, path: Path) -> dict:
    import yaml

    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _count_nodes(node, path)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RegfwError(f"config file {path} is not valid YAML{where}") from None
    except RecursionError:  # thousands of nested brackets: no configuration is that deep
        raise RegfwError(f"config file {path} is nested too deeply to be a configuration") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RegfwError(f"config file {path} must hold a mapping (like `regfw show` prints), got {type(data).__name__}")
    return data


def _count_nodes(root, path: Path) -> int:
    """The number of values in the composed YAML with every alias expanded, or a one-line error
    past :data:`MAX_CONFIG_NODES` or for an alias that contains itself. Shared nodes are
    counted once each and reused, so the count itself costs one pass over the file's nodes."""
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise RegfwError(f"config file {path} has an alias that contains itself")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        if total > MAX_CONFIG_NODES:
            raise RegfwError(f"config file {path} expands to over {MAX_CONFIG_NODES} values (YAML aliases?); "
                             "a configuration is far smaller")
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(root)
