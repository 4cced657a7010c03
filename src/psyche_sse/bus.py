"""The event bus: publish a session's events, subscribe from any point, replay history.

Each session has one append-only log with a bounded history. A subscriber is only a cursor
into that log, so a slow subscriber costs no memory of its own and never holds up the
publisher or the other subscribers: it simply reads a longer batch next time, and the SSE
layer folds consecutive deltas of that batch together.

:class:`EventBus` is the interface the council and the web layer see; :class:`MemoryBus` is
the in-process implementation, :class:`~psyche_sse.redisbus.RedisBus` the one several
processes share (Redis Streams). What may have to ask another process is async (the ids, the
history, opening a watch or a hold); what only reads the process's own state is not.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from .config import DEFAULT_HISTORY_EVENTS
from .events import Event, Payload


class EventBus(Protocol):
    async def publish(self, payload: Payload) -> Event:
        """Append an event to its session's log and wake its subscribers."""
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

    async def history(self, session_id: str, after: int = 0) -> list[Event]:
        """The retained events with ids greater than ``after``."""
        ...

    async def last_id(self, session_id: str) -> int:
        """The id of the newest event of the session, 0 when there is none."""
        ...

    async def first_id(self, session_id: str) -> int:
        """The id of the oldest event still retained (``last_id() + 1`` when none is): a
        subscriber can resume from any cursor from ``first_id() - 1`` to ``last_id()``."""
        ...

    def start_at(self, session_id: str, next_id: int) -> None:
        """Continue a session's numbering from ``next_id`` (a session loaded from the store)."""
        ...

    def reserved(self, session_id: str, ceiling: int) -> None:
        """The store has reserved the session's ids up to ``ceiling``: a shared log that
        lost its numbering (Redis restarted empty) goes on after it."""
        ...

    def retain(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """While open, every event published from now on is kept, whatever the history
        limit: a reader that must first fetch something slow (the stored history) then
        resumes where that left off without a gap."""
        ...

    def watch(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """Count a follower of the session while open (see :meth:`followers`). Inside it,
        :meth:`history`, :meth:`first_id`, :meth:`last_id` and :meth:`read` are answered
        from this process's memory, at no cost per call."""
        ...

    def followers(self, session_id: str) -> int:
        """How many followers are watching the session now, in this process."""
        ...

    def close(self, session_id: str) -> None:
        """End every subscription of the session in this process and forget its events
        here (a shared log stays for the other processes)."""
        ...


class Signal:
    """Wakes every task waiting on it at once; each waits with its own time limit.

    Built for thousands of waiters on one signal (a session's viewers, a shared clock): a
    waiter costs one future. ``asyncio.Event`` takes each woken waiter out of a deque by
    value (quadratic in the waiters), and an anyio cancel scope per timed wait costs more
    than the wait itself. A waiter cancelled from outside (an anyio scope, a gone client)
    leaves in constant time and wakes nobody else.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    async def wait(self, seconds: float = math.inf, timers: Timers | None = None) -> None:
        """Until :meth:`set` is called or ``seconds`` pass, whichever is first; a limit of a
        second or more on one of ``timers``' shared timers when given."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.add(waiter)
        timer = shared = None
        if seconds == math.inf:
            pass
        elif timers is not None and seconds >= SHARED_TIMER_FROM:
            shared = timers.due(loop, seconds)
            shared._waiters.add(waiter)
        else:
            timer = loop.call_later(seconds, _wake, waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)
            if shared is not None:
                shared._waiters.discard(waiter)
            if timer is not None:
                timer.cancel()

    def set(self) -> None:
        """Wake every current waiter (from the event loop's thread)."""
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            _wake(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


SHARED_TIMER_FROM = 1.0  # seconds: longer limits may share a timer


class Timers:
    """Timers shared by long waits (a stream's heartbeat): those due in the same quarter of
    a second end together, up to a quarter of a second late, on one timer rather than one
    each (about 2 µs to set and cancel, on every message to every viewer)."""

    GRAIN = 0.25

    def __init__(self) -> None:
        self._due: dict[tuple[asyncio.AbstractEventLoop, int], Signal] = {}

    def due(self, loop: asyncio.AbstractEventLoop, seconds: float) -> Signal:
        """A signal set at the end of the quarter second in which ``seconds`` from now is."""
        key = (loop, math.ceil((loop.time() + seconds) / self.GRAIN))
        signal = self._due.get(key)
        if signal is None:
            for gone in [k for k in self._due if k[0].is_closed()]:
                del self._due[gone]  # of a loop closed before they were due (tests)
            signal = self._due[key] = Signal()
            loop.call_at(key[1] * self.GRAIN, self._fire, key)
        return signal

    def _fire(self, key: tuple[asyncio.AbstractEventLoop, int]) -> None:
        signal = self._due.pop(key, None)
        if signal is not None:
            signal.set()


@dataclass(eq=False)
class _Hold:
    at: int  # the oldest id kept for its holder


@dataclass
class _Log:
    limit: int
    next_id: int = 1
    events: deque[Event] = field(default_factory=deque)
    changed: Signal = field(default_factory=Signal)
    closed: bool = False
    holds: list[_Hold] = field(default_factory=list)  # kept from, whatever the limit
    followers: int = 0

    def append(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) > self.limit:
            self.trim()

    def trim(self) -> None:
        """Down to the limit, but for the events someone holds."""
        events = self.events
        keep_from = min(h.at for h in self.holds) if self.holds else math.inf
        while len(events) > self.limit and events[0].id < keep_from:
            events.popleft()

    def release(self, hold: _Hold) -> None:
        self.holds.remove(hold)
        self.trim()

    def after(self, cursor: int) -> list[Event]:
        if not self.events or self.events[-1].id <= cursor:
            return []
        first = self.events[0].id
        start = max(0, cursor - first + 1)
        # Ids are dense within the log, so the position is arithmetic, not a search.
        return [self.events[i] for i in range(start, len(self.events))]

    def notify(self) -> None:
        self.changed.set()


# Closed logs kept for readers still behind them.
CLOSED_KEPT = 64


class MemoryBus:
    """An in-process :class:`EventBus`. Not thread-safe: use it from one event loop."""

    def __init__(self, history_limit: int = DEFAULT_HISTORY_EVENTS, *, first_id: int = 1) -> None:
        self._limit = history_limit
        self._first_id = first_id
        self._logs: dict[str, _Log] = {}
        self._closed: OrderedDict[str, _Log] = OrderedDict()
        self._timers = Timers()

    def _log(self, session_id: str) -> _Log:
        log = self._logs.get(session_id)
        if log is None:
            log = self._logs[session_id] = _Log(self._limit, next_id=self._first_id)
            self._closed.pop(session_id, None)  # a session back after :meth:`close`
        return log

    def start_at(self, session_id: str, next_id: int) -> None:
        log = self._log(session_id)
        if not log.events and next_id > log.next_id:
            log.next_id = next_id

    def reserved(self, session_id: str, ceiling: int) -> None:
        pass  # this log lives and dies with the process: it cannot lose its numbering alone

    async def publish(self, payload: Payload) -> Event:
        log = self._log(payload.session_id)
        event = Event(log.next_id, payload)
        log.next_id += 1
        log.append(event)
        log.notify()
        return event

    async def subscribe(self, session_id: str, after: int = 0) -> AsyncIterator[list[Event]]:
        # The log keeps what this subscriber has not read yet, however far behind it is.
        hold = _Hold(after + 1)
        log = self._log(session_id)
        log.holds.append(hold)
        try:
            while (batch := await self.read(session_id, hold.at - 1, math.inf)) is not None:
                if batch:  # empty only when woken by :meth:`wake`
                    hold.at = batch[-1].id + 1
                    yield batch
        finally:
            log.release(hold)

    async def read(self, session_id: str, after: int, wait: float) -> list[Event] | None:
        log = self._logs.get(session_id) or self._closed.get(session_id) or self._log(session_id)
        batch = log.after(after)
        if batch or log.closed:
            return batch or None
        await log.changed.wait(wait, self._timers)
        return log.after(after) or (None if log.closed else [])

    def wake(self) -> None:
        for log in self._logs.values():
            log.notify()

    async def history(self, session_id: str, after: int = 0) -> list[Event]:
        log = self._logs.get(session_id)
        return log.after(after) if log else []

    async def last_id(self, session_id: str) -> int:
        log = self._logs.get(session_id)
        return log.next_id - 1 if log else 0

    async def first_id(self, session_id: str) -> int:
        log = self._logs.get(session_id)
        if log is None:
            return 1
        return log.events[0].id if log.events else log.next_id

    def receive(self, session_id: str, events: list[Event], *, next_id: int | None = None) -> None:
        """Take in events numbered elsewhere (a shared log's, in order), for this process's
        readers. Those it already has are skipped; after a gap (events it never got) it keeps
        only what follows the gap, so a reader behind it is told it fell behind. ``next_id``:
        the id the log continues from when ``events`` is empty (a log just loaded)."""
        log = self._log(session_id)
        took = False
        for event in events:
            if event.id < log.next_id:
                continue
            if event.id > log.next_id:
                log.events.clear()
            log.next_id = event.id + 1
            log.append(event)
            took = True
        if next_id is not None and not log.events and next_id > log.next_id:
            log.next_id = next_id
        if took:
            log.notify()

    def drop(self, session_id: str) -> None:
        """Forget the session's events here without ending anything (nobody reads them)."""
        log = self._logs.get(session_id)
        if log is not None and not log.followers and not log.holds:
            del self._logs[session_id]

    @asynccontextmanager
    async def retain(self, session_id: str) -> AsyncIterator[None]:
        log = self._log(session_id)
        hold = _Hold(log.next_id)
        log.holds.append(hold)
        try:
            yield
        finally:
            log.release(hold)

    @asynccontextmanager
    async def watch(self, session_id: str) -> AsyncIterator[None]:
        log = self._log(session_id)
        log.followers += 1
        try:
            yield
        finally:
            log.followers -= 1

    def followers(self, session_id: str) -> int:
        log = self._logs.get(session_id)
        return log.followers if log else 0

    def close(self, session_id: str) -> None:
        log = self._logs.pop(session_id, None)
        if log is not None:
            log.closed = True
            if log.followers or log.holds:
                # Kept a while, closed, so a reader still behind gets its last events, then
                # the end (ids are never reused).
                self._closed[session_id] = log
                if len(self._closed) > CLOSED_KEPT:
                    self._closed.popitem(last=False)
            log.notify()
