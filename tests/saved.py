"""Reading a server's database from outside, as a crash test does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

RUNNING_TEXT = "SELECT text FROM turns WHERE status = 'running' AND text <> ''"


def saved_partial(db: Path | str) -> str | None:
    """The partial text of a running turn, once the server has saved one (every couple of
    seconds while a turn streams); ``None`` before that, or before the tables exist.
    ``db``: a SQLite file, or a PostgreSQL URL."""
    if isinstance(db, str):
        try:
            with psycopg.connect(db, autocommit=True, connect_timeout=10) as pg:
                found = pg.execute(RUNNING_TEXT).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return str(found[0]) if found else None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute(RUNNING_TEXT).fetchone()
    except sqlite3.Error:  # no table yet
        return None
    finally:
        conn.close()
    return str(row[0]) if row else None
