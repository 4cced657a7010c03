"""What the queries run on: a connection to SQLite or to PostgreSQL, behind one interface.

Every query of the store is written once, in the SQL both databases accept, with ``?``
placeholders; a :class:`Connection` runs it on its database (PostgreSQL's driver takes
``%s``: the PostgreSQL connection translates). What cannot be written once lives here, in
the two implementations: transactions, the schema version and the lock that keeps two
processes from migrating at once. A :class:`Backend` hands out connections to a thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]
URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(target: str) -> bool:
    """Whether ``target`` names a PostgreSQL server rather than a SQLite file."""
    return target.lower().startswith(URL_SCHEMES)


class Cursor(Protocol):
    """The part of a DB-API cursor the queries use (sqlite3's and psycopg's alike)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(ABC):
    """One database connection, used by one thread at a time."""

    dialect: Dialect

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] | None = None) -> Cursor:
        """Run one statement, with ``?`` placeholders for ``params``."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one statement once per row of parameters."""

    @abstractmethod
    def script(self, sql: str) -> None:
        """Run several statements with no parameters (a migration step), inside the
        caller's transaction."""

    @abstractmethod
    def transaction(self, *, immediate: bool = False) -> AbstractContextManager[None]:
        """A transaction: committed when the block ends, rolled back if it raises.
        ``immediate``: take the write lock at once (SQLite; PostgreSQL locks rows)."""

    @abstractmethod
    def lock_schema(self) -> None:
        """Inside a transaction: wait until no other process is migrating, and keep
        the others waiting until this transaction ends."""

    @abstractmethod
    def schema_version(self) -> int:
        """How many migration steps the database has (0: a new database)."""

    @abstractmethod
    def set_schema_version(self, number: int) -> None:
        """Inside the transaction of step ``number``: record that it is applied."""


class Backend(ABC):
    """An open database: runs work on a connection, and names itself in messages."""

    dialect: Dialect
    where: str
    """The file, or the URL without its password: what error messages name."""
    capacity: int
    """How many threads may run work at once."""

    @abstractmethod
    def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` with a connection in this thread. A database error becomes a
        :class:`~psyche_sse.errors.StoreError` whose cause is the driver's error."""

    @abstractmethod
    def close(self) -> None: ...


def in_transaction(fn: Callable[[Connection], T], conn: Connection) -> T:
    with conn.transaction():
        return fn(conn)
