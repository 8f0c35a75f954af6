"""Where the UI of a store is: the address file a running ``regfw ui`` keeps beside its SQLite
store (the link ``regfw run`` and ``regfw sweep`` print from it: :mod:`regfw.cli.ui_link`).

Why a file: a run finishing in one terminal cannot otherwise know that ``regfw ui`` serves its
store in another, nor on which port. ``regfw ui`` writes ``HOST``, ``PORT`` and its pid beside the
database (``mlflow.db.ui.json``) once the server answers and removes it when it stops; a reader
trusts it only while that pid is alive and the port answers, so a file left by a killed
``regfw ui`` points nowhere. For an ``http://`` store the server itself is the UI.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

SUFFIX = ".ui.json"
ANSWER_SECONDS = 1.0  # a local port answers at once; a dead one must not delay the end of a run


def address_file(uri: str) -> Path | None:
    """The address file of a SQLite store, None for any other store."""
    from regfw.store import sqlite_path

    path = sqlite_path(uri)
    return None if path is None else path.with_name(path.name + SUFFIX)


def announce(uri: str, host: str, port: int) -> Path | None:
    """Say that this process serves the UI of ``uri`` at ``host:port``; the file, or None when the
    store has no place for one (a server store; a folder regfw cannot write: the UI still runs)."""
    path = address_file(uri)
    if path is None:
        return None
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        partial.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid()}), encoding="utf-8")
        os.replace(partial, path)  # a reader never sees half a file
    except OSError:
        partial.unlink(missing_ok=True)
        return None
    return path


def withdraw(path: Path | None) -> None:
    """Remove the address file this process wrote (not one a later ``regfw ui`` has written since)."""
    if path is None:
        return
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:  # someone else's process: alive
        return True
    except (OSError, ValueError, TypeError, OverflowError):
        return False
    return True


def _answers(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        with socket.create_connection((target, port), timeout=ANSWER_SECONDS):
            return True
    except (OSError, ValueError, OverflowError):
        return False


def ui_base(uri: str) -> str | None:
    """``http://HOST:PORT`` of a UI serving ``uri`` now, or None: an ``http(s)://`` store is its
    own UI; a SQLite store's is the one its address file names, while that process lives and
    its port answers."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    path = address_file(uri)
    try:
        found = json.loads(path.read_text(encoding="utf-8")) if path is not None else None
        host, port, pid = str(found["host"]), int(found["port"]), found["pid"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not _alive(pid) or not _answers(host, port):
        return None
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"
