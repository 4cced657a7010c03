"""The store's two databases in the tests: a SQLite file or a PostgreSQL URL, and what a test
needs to reach either from outside the store (an old schema, the tables there are)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from psyche_sse.config import Settings
from psyche_sse.store import schema
from psyche_sse.store.connection import Connection, in_transaction
from psyche_sse.store.database import connect

T = TypeVar("T")
Database = Path | str
"""A SQLite file, or the URL of a PostgreSQL database."""

BACKENDS = ("sqlite", "postgresql")
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])
"""For a test of what only SQLite has (a file: corrupt, read-only, in a directory)."""


def settings_for(db: Database, **values: Any) -> Settings:
    """Settings that store in ``db``."""
    if isinstance(db, str):
        return Settings(database_url=db, **values)
    return Settings(db=db, **values)


def target(db: Database) -> str:
    """What ``Store.open`` and a ``--db``-like setting take."""
    return db if isinstance(db, str) else str(db)


def raw(db: Database, fn: Callable[[Connection], T], *, write: bool = False) -> T:
    """Run ``fn`` on the database as it is (not migrated), as another program would."""
    if isinstance(db, Path):
        db.parent.mkdir(parents=True, exist_ok=True)
    backend = connect(target(db))
    try:
        return backend.run(partial(in_transaction, fn) if write else fn)
    finally:
        backend.close()


def old_database(db: Database, steps: int) -> None:
    """The database as a release with only the first ``steps`` migration steps left it."""
    raw(db, partial(schema.migrate, to=steps))


def tables(db: Database) -> set[str]:
    def names(conn: Connection) -> set[str]:
        if conn.dialect == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        else:
            sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        return {row[0] for row in conn.execute(sql).fetchall()}

    return raw(db, names)
