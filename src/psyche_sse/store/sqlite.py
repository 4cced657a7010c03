"""SQLite, the embedded default: one file, one connection used by one thread at a time.

Writes never contend with each other in this process, and the event loop never waits on
the disk. WAL mode lets another process (or the tests) read while we write;
``synchronous=NORMAL`` keeps every committed transaction through a crash of the process.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ..errors import StoreError
from .connection import Backend, Connection, Cursor, Dialect

T = TypeVar("T")
MEMORY = ":memory:"


def problem(exc: BaseException) -> str:
    """What went wrong, in one line a person can act on."""
    name = getattr(exc, "sqlite_errorname", "")
    detail = " ".join(str(exc).split())
    if name == "SQLITE_NOTADB":
        return "not a SQLite database, or its header is corrupt; move it away or set PSYCHE_DB"
    if name == "SQLITE_CORRUPT":
        return f"the file is corrupt ({detail}); move it away or set PSYCHE_DB"
    if name == "SQLITE_CANTOPEN":
        return "cannot open the file (is the path a directory, or the directory unwritable?)"
    if name.startswith("SQLITE_READONLY"):
        return "the file or its directory is read-only"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "locked by another process"
    if isinstance(exc, OSError):
        return exc.strerror or detail
    return detail


def statements(script: str) -> Iterator[str]:
    """The statements of ``script``, split where SQLite itself sees one end (a ``;`` in
    a string or a comment does not end one)."""
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \t\n;"):
                yield current
            current = ""
    if current.strip(" \t\n;"):
        yield current.removesuffix(";")


class SQLiteConnection(Connection):
    dialect: Dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[object] | None = None) -> Cursor:
        return self.raw.execute(sql, () if params is None else params)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self.raw.executemany(sql, rows)

    def script(self, sql: str) -> None:
        # Not executescript: that commits the caller's transaction first.
        for statement in statements(sql):
            self.raw.execute(statement)

    @contextmanager
    def transaction(self, *, immediate: bool = False) -> Iterator[None]:
        with self.raw:  # commits, or rolls back on an exception
            self.raw.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            yield

    def lock_schema(self) -> None:
        pass  # BEGIN IMMEDIATE already holds the database's one write lock

    def schema_version(self) -> int:
        return int(self.raw.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, number: int) -> None:
        self.raw.execute(f"PRAGMA user_version = {int(number)}")


class SQLiteBackend(Backend):
    dialect: Dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection, where: str) -> None:
        self.where = where
        self.capacity = 1
        self._conn = SQLiteConnection(raw)
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, where: str) -> SQLiteBackend:
        """Open the file (creating it and its directory when missing). Raises
        :class:`StoreError`."""
        if where != MEMORY:
            parent = Path(where).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                why = "not a directory" if parent.exists() else problem(exc)
                raise StoreError(where, f"cannot create its directory {parent}: {why}") from None
        try:
            raw = sqlite3.connect(where, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(where, problem(exc)) from None
        try:
            raw.execute("PRAGMA busy_timeout = 5000")
            raw.execute("PRAGMA journal_mode = WAL")
            raw.execute("PRAGMA synchronous = NORMAL")
            raw.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raw.close()
            raise StoreError(where, problem(exc)) from None
        return cls(raw, where)

    def run(self, fn: Callable[[Connection], T]) -> T:
        with self._lock:
            if self._closed:
                raise StoreError(self.where, "the database is closed")
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                raise StoreError(
                    self.where, problem(exc), conflict=isinstance(exc, sqlite3.IntegrityError)
                ) from exc

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.raw.close()
