"""The event bus: publish a session's events, subscribe from any point, replay history.

Each session has one append-only log with a bounded history. A subscriber is only a cursor
into that log, so a slow subscriber costs no memory of its own and never holds up the
publisher or the other subscribers: it simply reads a longer batch next time, and the SSE
layer folds consecutive deltas of that batch together.

:class:`EventBus` is the interface the council and the web layer see; :class:`MemoryBus` is
the in-process implementation. A Redis Streams bus would implement the same methods
(``XADD`` to publish, ``XRANGE``/``XREAD BLOCK`` to subscribe) without touching the council.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from .events import Event, EventType


class EventBus(Protocol):
    async def publish(self, session_id: str, kind: EventType, data: dict[str, Any]) -> Event:
        """Append an event to the session's log and wake its subscribers."""
        ...

    def subscribe(self, session_id: str, after: int = 0) -> AsyncIterator[list[Event]]:
        """Yield batches of events with ids greater than ``after``, live, until closed."""
        ...

    async def read(self, session_id: str, after: int, wait: float) -> list[Event] | None:
        """The events with ids greater than ``after``, waiting up to ``wait`` seconds for
        one: ``[]`` when none came, ``None`` once the session's log is closed."""
        ...

    def wake(self) -> None:
        """Return every pending :meth:`read` now (with what it has, maybe nothing)."""
        ...

    def history(self, session_id: str, after: int = 0) -> list[Event]:
        """The retained events with ids greater than ``after``."""
        ...

    def last_id(self, session_id: str) -> int:
        """The id of the newest event of the session, 0 when there is none."""
        ...

    def first_id(self, session_id: str) -> int:
        """The id of the oldest event still retained (``last_id() + 1`` when none is): a
        subscriber can resume from any cursor from ``first_id() - 1`` to ``last_id()``."""
        ...


@dataclass
class _Log:
    limit: int
    events: deque[Event] = field(init=False)
    next_id: int = 1
    changed: anyio.Event = field(default_factory=anyio.Event)
    closed: bool = False

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.limit)

    def after(self, cursor: int) -> list[Event]:
        if not self.events or self.events[-1].id <= cursor:
            return []
        first = self.events[0].id
        start = max(0, cursor - first + 1)
        # Ids are dense within the log, so the position is arithmetic, not a search.
        return [self.events[i] for i in range(start, len(self.events))]

    def notify(self) -> None:
        changed, self.changed = self.changed, anyio.Event()
        changed.set()


# Closed logs kept for readers still behind them.
CLOSED_KEPT = 64


class MemoryBus:
    """An in-process :class:`EventBus`. Not thread-safe: use it from one event loop."""

    def __init__(self, history_limit: int = 20_000, *, first_id: int = 1) -> None:
        self._limit = history_limit
        self._first_id = first_id
        self._logs: dict[str, _Log] = {}
        self._closed: OrderedDict[str, _Log] = OrderedDict()

    def _log(self, session_id: str) -> _Log:
        log = self._logs.get(session_id)
        if log is None:
            log = self._logs[session_id] = _Log(self._limit, next_id=self._first_id)
        return log

    def start_at(self, session_id: str, next_id: int) -> None:
        """Continue a session's numbering (for instance after a restart)."""
        log = self._log(session_id)
        log.next_id = max(log.next_id, next_id)

    async def publish(self, session_id: str, kind: EventType, data: dict[str, Any]) -> Event:
        log = self._log(session_id)
        event = Event(id=log.next_id, type=kind, data=data)
        log.next_id += 1
        log.events.append(event)
        log.notify()
        return event

    async def subscribe(self, session_id: str, after: int = 0) -> AsyncIterator[list[Event]]:
        cursor = after
        while (batch := await self.read(session_id, cursor, math.inf)) is not None:
            if batch:  # empty only when woken by :meth:`wake`
                cursor = batch[-1].id
                yield batch

    async def read(self, session_id: str, after: int, wait: float) -> list[Event] | None:
        log = self._closed.get(session_id) or self._log(session_id)
        batch = log.after(after)
        if batch or log.closed:
            return batch or None
        with anyio.move_on_after(wait):
            await log.changed.wait()
        return log.after(after) or (None if log.closed else [])

    def wake(self) -> None:
        for log in self._logs.values():
            log.notify()

    def history(self, session_id: str, after: int = 0) -> list[Event]:
        log = self._logs.get(session_id)
        return log.after(after) if log else []

    def last_id(self, session_id: str) -> int:
        log = self._logs.get(session_id)
        return log.next_id - 1 if log else 0

    def first_id(self, session_id: str) -> int:
        log = self._logs.get(session_id)
        if log is None:
            return 1
        return log.events[0].id if log.events else log.next_id

    def close(self, session_id: str) -> None:
        """End every subscription of the session and forget its log."""
        log = self._logs.pop(session_id, None)
        if log is not None:
            # Kept a while, closed, so a reader still behind gets its last events, then the
            # end (ids are never reused).
            self._closed[session_id] = log
            if len(self._closed) > CLOSED_KEPT:
                self._closed.popitem(last=False)
            log.closed = True
            log.notify()
