"""The store's database, SQLite or PostgreSQL: opening it safely, and running work on it off
the event loop.

:meth:`Store.open` takes a file path (SQLite, the default) or a ``postgresql://`` URL. The
work runs in worker threads: one at a time on SQLite's one connection, so writes never
contend; as many as the pool has connections on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import anyio

from ..errors import StoreError
from ..transcript import Transcript
from . import queries
from .connection import Backend, Connection, Dialect, in_transaction, is_url
from .records import CouncilMemory, SessionSummary
from .schema import SchemaTooNew, migrate
from .sqlite import MEMORY

log = logging.getLogger(__name__)

T = TypeVar("T")
Write = Callable[[Connection], object]
Request = Callable[[Connection], object]


def connect(where: str) -> Backend:
    """The database at ``where`` (a file path, or a ``postgresql://`` URL), as it is: not
    migrated. :meth:`Store.open` is what the service uses."""
    if is_url(where):
        # Imported only here: psycopg is not loaded by a server that uses SQLite.
        from .postgres import PostgresBackend

        return PostgresBackend.open(where)
    from .sqlite import SQLiteBackend

    return SQLiteBackend.open(where)


# Seconds a PostgreSQL database's size is reused before it is asked again.
SIZE_EVERY = 10.0


def file_bytes(db: str) -> int | None:
    """The size of a SQLite database on disk, its write-ahead log included; None when it
    has no file (``:memory:``, or not created yet)."""
    if db == MEMORY:
        return None
    try:
        total = os.stat(db).st_size
    except OSError:
        return None
    with contextlib.suppress(OSError):  # no log yet, or just checkpointed away
        total += os.stat(f"{db}-wal").st_size
    return total


class Store:
    """The open database. Use :meth:`open` (or :meth:`aopen`), then ``close``."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.path = backend.where
        """What messages name: the file, or the URL without its password."""
        self.dialect: Dialect = backend.dialect
        self._limiter: anyio.CapacityLimiter | None = None
        self._size: tuple[float, int | None] | None = None  # (when read, bytes)

    # --- opening and closing -----------------------------------------------------------

    @classmethod
    def open(cls, target: str | os.PathLike[str]) -> Store:
        """Open (creating a SQLite file and its directory when missing), migrate, and mark
        the turns a dead process left running as interrupted. ``target``: a file path, or a
        ``postgresql://`` URL. Raises :class:`StoreError`."""
        backend = connect(os.fspath(target))
        where = backend.where
        try:
            applied = backend.run(migrate)
            turns, rounds = backend.run(partial(in_transaction, queries.mark_interrupted))
        except SchemaTooNew as exc:
            backend.close()
            raise StoreError(where, f"{exc}; upgrade psyche-sse to use it") from None
        except StoreError as exc:
            backend.close()
            raise StoreError(where, exc.problem) from None
        except BaseException:
            backend.close()
            raise
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
        return cls(backend)

    @classmethod
    async def aopen(cls, target: str | os.PathLike[str]) -> Store:
        return await anyio.to_thread.run_sync(cls.open, target)

    def close(self) -> None:
        self._backend.close()

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

    def run_blocking(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` with a connection, in this thread (short reads only). A database
        error becomes a :class:`StoreError`."""
        return self._backend.run(fn)

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` with a connection in a worker thread: on SQLite one at a time, in
        order; on PostgreSQL as many at once as the pool has connections."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._backend.capacity)
        return await anyio.to_thread.run_sync(self.run_blocking, fn, limiter=self._limiter)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a transaction of its own."""
        return await self.run(partial(in_transaction, fn))

    def write_now(self, fn: Callable[[Connection], T]) -> T:
        """:meth:`write`, blocking: for synchronous callers (the CLI)."""
        return self.run_blocking(partial(in_transaction, fn))

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

    def size(self) -> int | None:
        """The database's size in bytes: a SQLite file with its write-ahead log (None in
        memory), or what PostgreSQL says of the database, asked at most every
        :data:`SIZE_EVERY` seconds (a short read: the status page and /metrics call this)."""
        if self.dialect == "sqlite":
            return file_bytes(self.path)
        now = time.monotonic()
        if self._size is None or now - self._size[0] >= SIZE_EVERY:
            try:
                found = self.run_blocking(
                    lambda c: c.execute("SELECT pg_database_size(current_database())").fetchone()
                )
                self._size = (now, int(found[0]))
            except StoreError:
                self._size = (now, None)
        return self._size[1]

    def council_memory_now(self, session_id: str, keep: int) -> CouncilMemory | None:
        """:meth:`council_memory`, blocking: for synchronous callers, a short read."""
        return self.run_blocking(partial(queries.council_memory, session_id=session_id, keep=keep))


def _apply(
    writes: Sequence[Write], requests: Sequence[Request], conn: Connection
) -> list[tuple[Any, BaseException | None]]:
    if writes:
        try:
            with conn.transaction():
                for write in writes:
                    write(conn)
        except Exception as exc:
            # One bad write must not cost the others: retry them one by one.
            log.error("saving a batch of %d writes failed (%s); retrying singly", len(writes), exc)
            for write in writes:
                try:
                    with conn.transaction():
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
