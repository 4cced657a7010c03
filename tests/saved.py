"""Reading a server's database from outside, as a crash test does."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def saved_partial(db: Path) -> str | None:
    """The partial text of a running turn, once the server has saved one (every couple of
    seconds while a turn streams); ``None`` before that, or before the tables exist."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute(
            "SELECT text FROM turns WHERE status = 'running' AND text <> ''"
        ).fetchone()
    except sqlite3.Error:  # no table yet
        return None
    finally:
        conn.close()
    return str(row[0]) if row else None
