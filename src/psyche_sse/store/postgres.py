"""PostgreSQL, for deployments across machines: psycopg 3 and its connection pool.

The store's API is async and runs its queries off the event loop, in worker threads; the
queries are plain functions of a connection, shared with SQLite. So this backend uses
psycopg's synchronous pool from those threads: each piece of work borrows a connection
(checked first, so a restarted server costs no failed request), runs, and gives it back.
Connections are in autocommit mode; a write opens its transaction explicitly.

The URL's password never leaves this module: :func:`redact` is what messages and logs name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import StoreError
from .connection import Backend, Connection, Cursor, Dialect

T = TypeVar("T")
RawConnection = psycopg.Connection[TupleRow]

POOL_SIZE = 8
"""Connections each process keeps at most (it keeps one when idle)."""
CONNECT_TIMEOUT = 10
"""Seconds to wait for the server, unless the URL sets ``connect_timeout``."""
WAIT_TIMEOUT = 30.0
"""Seconds a piece of work waits for a connection from the pool."""
SCHEMA_LOCK = 0x7073_7963_6865_0001
"""The advisory lock a process holds while it migrates (any 64-bit number of our own)."""

_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@?#]*):([^@/?#]*)@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL with its password (in the user part or the query) replaced by ``***``."""
    return _QUERY_PASSWORD.sub(r"\1***", _USERINFO.sub(r"\1:***@", url))


def _secrets(url: str, params: Mapping[str, object]) -> list[str]:
    """Every spelling of the password a driver message could echo, longest first."""
    found = [url]
    for pattern in (_USERINFO, _QUERY_PASSWORD):
        match = pattern.search(url)
        if match and match.group(2):
            found.append(match.group(2))
    if params.get("password"):
        found.append(str(params["password"]))
    return sorted(set(found), key=len, reverse=True)


def problem(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """What went wrong, in one line, with no password in it."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    text = " ".join(str(primary or exc).split()) or type(exc).__name__
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _translate(sql: str) -> str:
    # psycopg's placeholder is %s, so a literal % is written %%.
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresConnection(Connection):
    dialect: Dialect = "postgresql"

    def __init__(self, raw: RawConnection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[object] | None = None) -> Cursor:
        if params is None:
            return self.raw.execute(sql)
        return self.raw.execute(_translate(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        with self.raw.cursor() as cursor:
            cursor.executemany(_translate(sql), rows)

    def script(self, sql: str) -> None:
        # With no parameters psycopg sends the text as it is, several statements at once.
        self.raw.execute(sql)

    @contextmanager
    def transaction(self, *, immediate: bool = False) -> Iterator[None]:
        with self.raw.transaction():
            yield

    def lock_schema(self) -> None:
        self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))

    def schema_version(self) -> int:
        # A query of the catalog, not to_regclass(): that one trusts this connection's
        # cache, which may not know yet of the table another process just created.
        row = self.raw.execute(
            "SELECT count(*) FROM pg_catalog.pg_tables"
            " WHERE schemaname = current_schema() AND tablename = 'schema_version'"
        ).fetchone()
        if not row or not row[0]:
            return 0
        row = self.raw.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def set_schema_version(self, number: int) -> None:
        if number == 1 or not self.schema_version():
            self.raw.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
            )
        self.raw.execute(
            "INSERT INTO schema_version (id, version) VALUES (1, %s)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            (number,),
        )


class PostgresBackend(Backend):
    dialect: Dialect = "postgresql"

    def __init__(self, pool: ConnectionPool[RawConnection], where: str, secrets: list[str]):
        self.where = where
        self.capacity = POOL_SIZE
        self._pool = pool
        self._secrets = secrets

    @classmethod
    def open(cls, url: str) -> PostgresBackend:
        """Connect (a clear :class:`StoreError` when the URL is bad, the server cannot be
        reached or refuses the credentials), then open the pool."""
        where = redact(url)
        try:
            params: dict[str, str | int | None] = dict(conninfo_to_dict(url))
        except psycopg.Error as exc:
            secrets = _secrets(url, {})
            raise StoreError(where, f"not a valid URL: {problem(exc, secrets)}") from None
        secrets = _secrets(url, params)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT)
        conninfo = make_conninfo("", **params)
        try:
            # One connection first: its error says why (the pool's would only time out).
            psycopg.connect(conninfo, autocommit=True).close()
        except psycopg.Error as exc:
            raise StoreError(where, f"cannot connect: {problem(exc, secrets)}") from None
        pool: ConnectionPool[RawConnection] = ConnectionPool(
            conninfo,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            check=ConnectionPool.check_connection,
            timeout=WAIT_TIMEOUT,
            name="psyche-sse",
        )
        try:
            pool.open(wait=True, timeout=float(CONNECT_TIMEOUT))
        except PoolTimeout:
            pool.close()
            raise StoreError(where, "cannot connect: the pool's connection timed out") from None
        return cls(pool, where, secrets)

    def run(self, fn: Callable[[Connection], T]) -> T:
        if self._pool.closed:
            raise StoreError(self.where, "the database is closed")
        try:
            with self._pool.connection() as raw:
                return fn(PostgresConnection(raw))
        except PoolTimeout:
            raise StoreError(
                self.where, f"no connection to the server within {WAIT_TIMEOUT:g} s"
            ) from None
        except psycopg.Error as exc:
            raise StoreError(
                self.where,
                problem(exc, self._secrets),
                conflict=isinstance(exc, psycopg.IntegrityError),
            ) from exc

    def close(self) -> None:
        self._pool.close()
