"""Reading a file the user named, within bounds: a regular file, a size cap, YAML aliases counted;
and checking a file the user names for regfw to write, before anything is computed for it.

Every file regfw reads on a user's word (``--config``, a table's ``dataset.path``,
``--ray-runtime-env``) may be the wrong one: a FIFO blocks an ``open`` forever, ``/dev/zero``
never ends, a huge file or a YAML alias bomb takes gigabytes. Each is one line of error here,
decided from the open file's own ``fstat`` (no gap between the check and the read) and without
reading past the bound.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from regfw.errors import RegfwError

MAX_YAML_NODES = 100_000  # values once aliases are expanded: bounds a YAML alias bomb


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


class Opened:
    """A regular file opened for reading, with its ``fstat`` (the caller closes it)."""

    def __init__(self, path: Path, fd: int, info: os.stat_result):
        self.path, self.fd, self.info = path, fd, info

    def read(self, limit: int, name: str) -> bytes:
        """At most ``limit`` bytes; a file that grew past it since the check is refused."""
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(self.fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise RegfwError(f"{name} {self.path} is over {limit} bytes")
        return b"".join(chunks)

    def close(self) -> None:
        os.close(self.fd)


def open_regular(path: str | Path, name: str, kind: str) -> Opened:
    """Open ``path`` as a regular file, or a one-line error naming ``name`` (``config file``,
    ``dataset.path``) and what it should be (``kind``: ``a YAML file``). O_NONBLOCK: opening a
    FIFO that nobody writes to returns at once (and is then refused) instead of hanging."""
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise RegfwError(f"{name} not found: {path} (no such file)") from None
    except PermissionError:
        raise RegfwError(f"cannot read {name} {path}: permission denied") from None
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a device that refuses
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise RegfwError(f"cannot read {name} {str(path)[:80]!r}: {reason}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise RegfwError(f"{name} {path} is a folder, not {kind}")
        raise RegfwError(f"{name} {path} is {_kind(info.st_mode)}, not a regular file: give {kind}")
    return Opened(path, fd, info)


def read_bounded(path: str | Path, name: str, kind: str, limit: int, why: str = "") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (``why``: what the bound is, for the
    message), refused from its size before a byte is read."""
    opened = open_regular(path, name, kind)
    try:
        if opened.info.st_size > limit:
            raise RegfwError(f"{name} {opened.path} is {opened.info.st_size} bytes; {why or 'at most'} "
                             f"{limit} bytes")
        return opened.read(limit, name)
    except OSError as exc:
        raise RegfwError(f"cannot read {name} {opened.path}: {exc.strerror or type(exc).__name__}") from None
    finally:
        opened.close()


def load_yaml(path: str | Path, name: str, limit: int, why: str = "", max_nodes: int = MAX_YAML_NODES):
    """A YAML (or JSON) file read with the safe loader, within :func:`read_bounded`'s bounds, its
    values counted with every ``*alias`` expanded first: a few hundred bytes of nested aliases
    would otherwise take minutes and gigabytes to build."""
    raw = read_bounded(path, name, "a YAML file", limit, why)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RegfwError(f"cannot read {name} {path}: it is not UTF-8 text") from None
    import yaml

    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _count_nodes(node, f"{name} {path}", max_nodes)
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RegfwError(f"{name} {path} is not valid YAML{where}") from None
    except RecursionError:  # thousands of nested brackets: no configuration is that deep
        raise RegfwError(f"{name} {path} is nested too deeply to be a configuration") from None


def _count_nodes(root, what: str, max_nodes: int) -> int:
    """The number of values in the composed YAML with every alias expanded, or a one-line error
    past ``max_nodes`` or for an alias that contains itself. Shared nodes are counted once each
    and reused, so the count itself costs one pass over the file's nodes."""
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise RegfwError(f"{what} has an alias that contains itself")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        if total > max_nodes:
            raise RegfwError(f"{what} expands to over {max_nodes} values (YAML aliases?); a configuration is far smaller")
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(root)


NAME_MAX, PATH_MAX = 255, 4095  # bytes: Linux's limits for one path component and a whole path
PSEUDO = ("/proc", "/sys", "/dev")


def _shown(path: Path) -> str:
    return str(path)[:120] + ("..." if len(str(path)) > 120 else "")


def check_path_length(path: str | Path, option: str) -> Path:
    """``path``, or one line when the OS cannot hold it (a name over 255 bytes, a path over 4095):
    every call on it, even ``exists()``, would raise "File name too long"."""
    path = Path(path).expanduser()
    encoded = [len(part.encode("utf-8", "surrogateescape")) for part in path.parts]
    if max(encoded, default=0) > NAME_MAX or len(str(path).encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise RegfwError(f"{option} {_shown(path)}: the path is too long for the OS (at most {NAME_MAX} bytes a "
                         f"name, {PATH_MAX} in all)")
    return path


def check_output_file(path: str | Path, option: str) -> Path:
    """``path`` (given as ``option``, e.g. ``--plot``) is a file regfw can create or replace: a
    name the OS can hold, in a folder that exists and takes new files, not a folder itself nor on
    the kernel's filesystems. One line each, before any work that would be lost when the write
    fails at the end ("unexpected OSError: File name too long")."""
    import tempfile

    path = check_path_length(path, option)
    shown = _shown(path)
    if any(ord(c) < 32 or ord(c) == 127 for c in str(path)):
        raise RegfwError(f"{option} {str(path)[:120]!r} holds a control character (a newline?)")
    absolute = path.absolute()
    kernel = next((p for p in PSEUDO if str(absolute) == p or str(absolute).startswith(p + "/")), None)
    if kernel is not None:
        raise RegfwError(f"{option} {shown}: {kernel} is the kernel's, not a place for a file")
    if path.is_dir():
        raise RegfwError(f"{option} {shown} is a folder; give a file name")
    folder = absolute.parent
    if not folder.exists():
        raise RegfwError(f"{option} {shown}: folder {folder} does not exist")
    if not folder.is_dir():
        raise RegfwError(f"{option} {shown}: {folder} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".regfw-probe-"):
            pass
    except OSError as exc:
        raise RegfwError(f"{option} {shown}: cannot write in {folder}: {exc.strerror or type(exc).__name__}") from None
    return path
