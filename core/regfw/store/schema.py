"""A store written by another MLflow: refused in one line before MLflow is opened on it.

Why: MLflow's own client, opened on a SQLite store made by an older MLflow that lacks some of
today's tables, creates them and runs every migration in place (MLflow 3.17 on a 3.10 store:
44 tables become 65) without asking, and the older MLflow can no longer open it. A store is the
user's record; upgrading it is theirs to decide. So an existing store whose ``alembic_version``
is not the installed MLflow's head is refused here, for every command (writers and readers):

- an older store, with MLflow's own whole message (``_verify_schema``: take a backup, then
  ``mlflow db upgrade``), which it gives for a store of a complete older schema;
- a newer store (a revision the installed MLflow does not ship), saying so: MLflow's message
  would call it "out-of-date".

A store another process is making right now (a plain MLflow client, ``mlflow server`` or another
regfw opened the new file a moment before) passes through every older revision on its way to the
head, with no experiment in it yet: that is waited for, not refused.

Read with the standard library's ``sqlite3``; MLflow is imported only to word a refusal.
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path

from regfw.errors import RegfwError


def check_version(connection, uri: str) -> None:
    """Refuse the store on ``connection`` unless it is at the installed MLflow's schema head (or
    has no ``alembic_version`` yet: a store MLflow has still to create)."""
    import sqlite3

    try:
        found = [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
    except sqlite3.Error:  # no such table: an empty store, created by MLflow as it is opened
        return
    revisions, heads = migration_revisions()
    if not found or not heads or set(found) == set(heads):
        return
    version = found[0]
    if version in revisions and not has_experiments(connection):
        version = wait_until_made(connection, heads, version)
        if version is None:
            return
    if version in revisions:
        raise RegfwError(f"tracking store {uri} was written by an older MLflow; regfw does not upgrade it: "
                         f"{mlflow_words(uri)}")
    from importlib.metadata import version as installed

    raise RegfwError(f"tracking store {uri} was written by a newer MLflow (schema version {version}, which the "
                     f"installed MLflow {installed('mlflow')} does not know); open it with that MLflow, or "
                     "give another store")


# How long a store's revision may stand still before a store with no experiment is taken for an
# older MLflow's empty store rather than one being made (each migration step of a new file takes
# milliseconds; the longest seen took well under a second).
STILL_FOR_S = 5.0
MADE_WITHIN_S = 120.0


def has_experiments(connection) -> bool:
    import sqlite3

    try:
        return connection.execute("SELECT 1 FROM experiments LIMIT 1").fetchone() is not None
    except sqlite3.Error:  # no such table yet: the first of MLflow's tables is still to come
        return False


def wait_until_made(connection, heads: frozenset[str], version: str | None) -> str | None:
    """Wait while another process migrates a new store; ``None`` once it is at the head, else the
    revision it stood still at (an older MLflow's empty store, refused by the caller)."""
    import sqlite3

    started = changed = time.monotonic()
    while time.monotonic() - changed < STILL_FOR_S and time.monotonic() - started < MADE_WITHIN_S:
        time.sleep(0.1)
        try:
            found = {row[0] for row in connection.execute("SELECT version_num FROM alembic_version")}
        except sqlite3.Error:  # locked by the migration, or alembic's table still to come
            continue
        if found and found == set(heads):
            return None
        now = next(iter(found), None)
        if now != version:
            version, changed = now, time.monotonic()
    return version


def mlflow_words(uri: str) -> str:
    """MLflow's own refusal of a store at another schema version, whole, on one line."""
    import sqlalchemy
    from mlflow.store.db.utils import _verify_schema

    engine = sqlalchemy.create_engine(uri)
    try:
        _verify_schema(engine)
    except Exception as exc:  # noqa: BLE001 - MlflowException: its message is the answer
        return " ".join(str(getattr(exc, "message", exc)).split())
    finally:
        engine.dispose()
    return "its schema is not the installed MLflow's"


@functools.cache
def migration_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """Every revision of the schema migrations shipped with the installed MLflow, and the heads
    among them, read from its files (importing the package would cost the two seconds this
    module saves)."""
    import importlib.util

    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return frozenset(), frozenset()
    versions = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
    revisions, parents = set(), set()
    for file in versions.glob("*.py"):
        text = file.read_text(encoding="utf-8", errors="replace")
        found = re.search(r"^revision\s*=\s*['\"](\w+)['\"]", text, re.M)
        if found:
            revisions.add(found.group(1))
        down = re.search(r"^down_revision\s*=\s*(.+)$", text, re.M)
        if down:
            parents.update(re.findall(r"['\"](\w+)['\"]", down.group(1)))
    return frozenset(revisions), frozenset(revisions - parents)
