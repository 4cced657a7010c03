"""The SQLite database: opening it safely, and running work on it off the event loop.

One connection, used by one worker thread at a time (a capacity limiter of one), so writes
never contend with each other and the event loop never waits on the disk. WAL mode lets
another process (or the tests) read while we write; ``synchronous=NORMAL`` keeps every
committed transaction through a crash of the process.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio

from ..errors import StoreError
from ..transcript import Transcript
from . import queries
from .records import CouncilMemory, SessionSummary
from .schema import SchemaTooNew, migrate

log = logging.getLogger(__name__)

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], object]
Request = Callable[[sqlite3.Connection], object]
MEMORY = ":memory:"


def _problem(exc: BaseException) -> str:
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


class Store:
    """The open database. Use :meth:`open` (or :meth:`aopen`), then ``close``."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.Lock()
        self._limiter: anyio.CapacityLimiter | None = None
        self._closed = False

    # --- opening and closing -----------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Store:
        """Open (creating it and its directory when missing), migrate, and mark the turns a
        dead process left running as interrupted. Raises :class:`StoreError`."""
        where = os.fspath(path)
        if where != MEMORY:
            parent = Path(where).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                problem = "not a directory" if parent.exists() else _problem(exc)
                raise StoreError(
                    where, f"cannot create its directory {parent}: {problem}"
                ) from None
        try:
            conn = sqlite3.connect(where, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(where, _problem(exc)) from None
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            applied = migrate(conn)
            turns, rounds = _in_transaction(queries.mark_interrupted, conn)
        except SchemaTooNew as exc:
            conn.close()
            raise StoreError(where, f"{exc}; upgrade psyche-sse to use it") from None
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(where, _problem(exc)) from None
        if applied:
            log.info("database %s: %d migration step(s) applied", where, applied)
        if turns or rounds:
            log.warning(
                "database %s: %d turn(s) and %d round(s) left running by a previous run are "
                "marked interrupted",
                where,
                turns,
                rounds,
            )
        return cls(conn, where)

    @classmethod
    async def aopen(cls, path: str | os.PathLike[str]) -> Store:
        return await anyio.to_thread.run_sync(cls.open, path)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- running work ------------------------------------------------------------------

    def run_blocking(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection, in this thread (short reads only). A database
        error becomes a :class:`StoreError`."""
        with self._lock:
            if self._closed:
                raise StoreError(self.path, "the database is closed")
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                raise StoreError(self.path, _problem(exc)) from exc

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection in the worker thread; one at a time, in order."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(self.run_blocking, fn, limiter=self._limiter)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a transaction of its own."""
        return await self.run(partial(_in_transaction, fn))

    def write_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`write`, blocking: for synchronous callers (the CLI)."""
        return self.run_blocking(partial(_in_transaction, fn))

    async def apply(
        self, writes: Sequence[Write], requests: Sequence[Request] = ()
    ) -> list[tuple[Any, BaseException | None]]:
        """Run ``writes`` in one transaction, then each request: its (result, error)."""
        return await self.run(partial(_apply, writes, requests))

    # --- the API for readers -----------------------------------------------------------

    async def list_sessions(
        self, *, limit: int = 50, offset: int = 0, owner: int | None = None
    ) -> list[SessionSummary]:
        return await self.run(
            partial(queries.list_sessions, limit=limit, offset=offset, owner=owner)
        )

    async def count_sessions(self, *, owner: int | None = None) -> int:
        return await self.run(partial(queries.count_sessions, owner=owner))

    async def transcript(self, session_id: str) -> Transcript | None:
        return await self.run(partial(queries.transcript, session_id=session_id))

    async def rename_session(self, session_id: str, title: str) -> bool:
        return await self.write(partial(queries.rename_session, session_id=session_id, title=title))

    async def delete_session(self, session_id: str) -> bool:
        return await self.write(partial(queries.delete_session, session_id=session_id))

    async def council_memory(self, session_id: str, keep: int) -> CouncilMemory | None:
        """What a council needs to carry the session on, with the text of the newest ``keep``
        replies of each agent; None when the session is not stored."""
        return await self.run(partial(queries.council_memory, session_id=session_id, keep=keep))

    def council_memory_now(self, session_id: str, keep: int) -> CouncilMemory | None:
        """:meth:`council_memory`, blocking: for synchronous callers, a short read."""
        return self.run_blocking(partial(queries.council_memory, session_id=session_id, keep=keep))


def _in_transaction(fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    with conn:
        conn.execute("BEGIN")
        return fn(conn)


def _apply(
    writes: Sequence[Write], requests: Sequence[Request], conn: sqlite3.Connection
) -> list[tuple[Any, BaseException | None]]:
    if writes:
        try:
            with conn:
                conn.execute("BEGIN")
                for write in writes:
                    write(conn)
        except Exception as exc:
            # One bad write must not cost the others: retry them one by one.
            log.error("saving a batch of %d writes failed (%s); retrying singly", len(writes), exc)
            for write in writes:
                try:
                    with conn:
                        write(conn)
                except Exception as single:
                    log.error("a write was lost: %s", single)
    outcomes: list[tuple[Any, BaseException | None]] = []
    for request in requests:
        try:
            outcomes.append((request(conn), None))
        except Exception as exc:
            outcomes.append((None, exc))
    return outcomes
