"""The event bus on Redis Streams: one stream per session, shared by every worker process.

Publishing is one ``XADD`` with an explicit id, ``N-0``, where ``N`` is the session's sequence
number, taken in the same Lua script from a counter next to the stream: ids are strictly
increasing across all the processes, and dense. The stream is trimmed to the history limit.

Reading is local. Each process keeps a copy (a :class:`~psyche_sse.bus.MemoryBus`) of the
sessions someone in it watches, holds or reads, and one task per process fills those copies
with one blocking ``XREAD`` over all of them: a thousand viewers of a session cost one read,
not a thousand, and a viewer's cursor, merging and pacing are those of the in-memory bus.
A session whose copy starts here is loaded with ``XREVRANGE`` first, then joins the next
``XREAD`` (a wake-up stream of the process interrupts the one blocking).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from types import TracebackType
from typing import Any, cast

import anyio
from anyio.abc import TaskGroup
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from .bus import MemoryBus
from .config import DEFAULT_HISTORY_EVENTS
from .errors import BusUnavailable, LeaseLost
from .events import Event, Payload, parse

log = logging.getLogger(__name__)

PREFIX = "psyche"
# The longest a reader blocks in one XREAD; a new session wakes it sooner.
BLOCK_MS = 2000  # below the client's socket timeout (5 s)
READ_COUNT = 1000
# How long the wake-up stream of a process lives after its last use.
WAKE_TTL_SECONDS = 86_400
# Between two tries to reach Redis again, while it is away.
RETRY_SECONDS = 0.5

# KEYS: stream, counter, epoch, the session's lease. ARGV: the first id of a new log; the
# first id after Redis lost its data (beyond the ids the store reserved); the event's JSON;
# the limit; the epoch this process knows; a new epoch, should Redis have none; the lease's
# holder this publish needs ('' for none).
#
# The lease fences a round: a worker that lost it (another took the round over) publishes
# nothing more of it, so that no round is ended twice or goes on after it was ended.
#
# The epoch, a random value, tells a Redis that lost its data (restarted without keeping
# it) from one that never had this session: a session's numbering then goes on past every
# id it may have published before. The counter is set only once the XADD succeeded, so an
# id is never skipped.
_PUBLISH = """
if ARGV[7] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[7] then
  return redis.error_reply('LEASE lost')
end
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  redis.call('SET', KEYS[3], ARGV[6])
  epoch = ARGV[6]
end
local last = redis.call('GET', KEYS[2])
if last then
  last = tonumber(last)
elseif epoch == ARGV[5] then
  last = tonumber(ARGV[1]) - 1
else
  last = tonumber(ARGV[2]) - 1
end
last = last + 1
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[4], last .. '-0', 'e', ARGV[3])
redis.call('SET', KEYS[2], last)
return {last, epoch}
"""
EPOCH = f"{PREFIX}:epoch"


def stream_key(session_id: str) -> str:
    return f"{PREFIX}:events:{session_id}"


def counter_key(session_id: str) -> str:
    return f"{PREFIX}:seq:{session_id}"


# redis-py types its replies loosely; these read the shapes Redis sends.
Entries = list[tuple[bytes, dict[bytes, bytes]]]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _number(entry_id: bytes | str) -> int:
    return int(_text(entry_id).split("-", 1)[0])


def _events(entries: Any) -> list[Event]:
    out = []
    for entry_id, fields in cast(Entries, entries or []):
        text = fields[b"e"].decode()
        out.append(Event(_number(entry_id), parse(json.loads(text)), _json=text))
    return out


class RedisBus:
    """An :class:`~psyche_sse.bus.EventBus` on Redis Streams. Use ``async with``.

    ``redis``: a client made with ``decode_responses=False`` (the default); the bus closes
    it on exit when it made it (:meth:`from_url`).
    """

    def __init__(
        self, redis: Redis, history_limit: int = DEFAULT_HISTORY_EVENTS, *, owns: bool = False
    ) -> None:
        self.redis = redis
        self._limit = history_limit
        self._owns = owns
        self._copy = MemoryBus(history_limit)
        self._users: dict[str, int] = {}  # session -> how many here need its copy current
        self._loaded: set[str] = set()  # sessions whose copy is current, read by the reader
        self._loading: dict[str, anyio.Event] = {}
        self._closed: set[str] = set()  # closed while some here still read it
        self._floor: dict[str, int] = {}  # session -> the lowest id its next event may have
        self._reserved: dict[str, int] = {}  # session -> the ids the store has reserved
        self._fences: dict[str, tuple[str, str]] = {}  # session -> its lease's key, holder
        self._epoch = ""
        self._wake_key = f"{PREFIX}:wake:{uuid.uuid4().hex}"
        self._wake_cursor = "0-0"
        self._publish = redis.register_script(_PUBLISH)
        self._tg: TaskGroup | None = None
        self.available = True

    @classmethod
    def from_url(cls, url: str, history_limit: int = DEFAULT_HISTORY_EVENTS) -> RedisBus:
        return cls(Redis.from_url(url), history_limit, owns=True)

    async def __aenter__(self) -> RedisBus:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._read_loop)
        try:
            await self.redis.set(EPOCH, uuid.uuid4().hex, nx=True)
            self._epoch = _text(await self.redis.get(EPOCH) or b"")
        except RedisError as exc:
            log.error("the event bus (Redis) is unavailable: %s", exc)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        self._tg = None
        with anyio.CancelScope(shield=True):
            with suppress(RedisError):
                await self.redis.delete(self._wake_key)
            if self._owns:
                await self.redis.aclose()

    # --- publishing ----------------------------------------------------------------------

    async def publish(self, payload: Payload) -> Event:
        session_id = payload.session_id
        event = Event(0, payload)
        floor = max(self._floor.get(session_id, 1), await self._copy.last_id(session_id) + 1)
        after_loss = max(floor, self._reserved.get(session_id, 0) + 1)
        lease, holder = self._fences.get(session_id, (EPOCH, ""))
        keys = [stream_key(session_id), counter_key(session_id), EPOCH, lease]
        args: list[str | int] = [
            floor,
            after_loss,
            event.json(),
            self._limit,
            self._epoch,
            uuid.uuid4().hex,
            holder,
        ]
        try:
            try:
                number, epoch = await self._publish(keys=keys, args=args)
            except RedisConnectionError:
                # Once more, on a new connection: the pool's was to a Redis since restarted
                # (a refused or closed connection ran nothing).
                number, epoch = await self._publish(keys=keys, args=args)
        except ResponseError as exc:
            if "LEASE" in str(exc):
                raise LeaseLost(session_id) from None
            raise BusUnavailable(str(exc)) from exc
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc
        self._epoch = _text(epoch)
        event.id = int(number)
        # Numbered at least this far, whatever happens to Redis.
        self._floor[session_id] = event.id + 1
        if session_id in self._loaded and await self._copy.last_id(session_id) == event.id - 1:
            # Its readers here need not wait for Redis; an event the reader has not brought
            # yet comes first, with this one after it.
            self._copy.receive(session_id, [event])
        return event

    def fence(self, session_id: str, lease: str, holder: str | None) -> None:
        """Publish the session's events only while ``holder`` holds the ``lease`` key
        (None: with no condition again)."""
        if holder is None:
            self._fences.pop(session_id, None)
        else:
            self._fences[session_id] = (lease, holder)

    def start_at(self, session_id: str, next_id: int) -> None:
        # Where a session Redis never had starts (one from before Redis was used).
        if next_id > self._floor.get(session_id, 1):
            self._floor[session_id] = next_id

    def reserved(self, session_id: str, ceiling: int) -> None:
        if ceiling > self._reserved.get(session_id, 0):
            self._reserved[session_id] = ceiling

    # --- reading -------------------------------------------------------------------------

    async def last_id(self, session_id: str) -> int:
        if session_id in self._loaded:
            return await self._copy.last_id(session_id)
        try:
            stored = await self.redis.get(counter_key(session_id))
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc
        # The floor stands only for a log Redis does not have (yet, or any more).
        return int(stored) if stored is not None else self._floor.get(session_id, 1) - 1

    async def first_id(self, session_id: str) -> int:
        if session_id in self._loaded:
            return await self._copy.first_id(session_id)
        try:
            first = _events(await self.redis.xrange(stream_key(session_id), count=1))
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc
        return first[0].id if first else await self.last_id(session_id) + 1

    async def history(self, session_id: str, after: int = 0) -> list[Event]:
        if session_id in self._loaded:
            return await self._copy.history(session_id, after)
        try:
            entries = await self.redis.xrange(stream_key(session_id), min=f"({after}-0")
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc
        return _events(entries)

    async def read(self, session_id: str, after: int, wait: float) -> list[Event] | None:
        if session_id in self._loaded and session_id in self._users:
            # Held current by a watch (every stream reads inside its own): from the copy,
            # as :meth:`history` is, at no cost per read for a crowded session's viewers.
            return await self._copy.read(session_id, after, wait)
        async with self._current(session_id):
            return await self._copy.read(session_id, after, wait)

    async def subscribe(self, session_id: str, after: int = 0) -> AsyncIterator[list[Event]]:
        async with self._current(session_id):
            async for batch in self._copy.subscribe(session_id, after):
                yield batch

    def wake(self) -> None:
        self._copy.wake()

    @asynccontextmanager
    async def retain(self, session_id: str) -> AsyncIterator[None]:
        async with self._current(session_id), self._copy.retain(session_id):
            yield

    @asynccontextmanager
    async def watch(self, session_id: str) -> AsyncIterator[None]:
        async with self._current(session_id), self._copy.watch(session_id):
            yield

    def followers(self, session_id: str) -> int:
        return self._copy.followers(session_id)

    def close(self, session_id: str) -> None:
        # Those reading it here now are told it ended, whenever they read next; once they
        # have all left, the next to come loads it again.
        self._copy.close(session_id)
        self._loaded.discard(session_id)
        if session_id in self._users:
            self._closed.add(session_id)

    # --- the copies, and the one reader that keeps them current ---------------------------

    @asynccontextmanager
    async def _current(self, session_id: str) -> AsyncIterator[None]:
        """While open, the session's copy here is current."""
        self._users[session_id] = self._users.get(session_id, 0) + 1
        try:
            while session_id not in self._loaded and session_id not in self._closed:
                loading = self._loading.get(session_id)
                if loading is not None:  # one load per session, however many arrive at once
                    await loading.wait()
                    continue
                loading = self._loading[session_id] = anyio.Event()
                try:
                    await self._load(session_id)
                finally:
                    del self._loading[session_id]
                    loading.set()
            yield
        finally:
            left = self._users.get(session_id, 1) - 1
            if left > 0:
                self._users[session_id] = left
            else:
                self._users.pop(session_id, None)
                self._loaded.discard(session_id)
                self._closed.discard(session_id)
                self._copy.drop(session_id)

    async def _load(self, session_id: str) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xrevrange(stream_key(session_id), count=self._limit)
                pipe.get(counter_key(session_id))
                newest_first, counter = await pipe.execute()
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc
        events = _events(newest_first)[::-1]
        # With no counter, nothing of the session was published to Redis yet: its first
        # event is whatever id the publishing process gives it, which may be below this
        # process's floor (a new session's floor here is the store's reservation, ahead of
        # its ids), so the copy takes the stream from its start.
        next_id = int(counter) + 1 if counter is not None else None
        self._copy.receive(session_id, events, next_id=next_id)
        self._loaded.add(session_id)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1)
                # Deleted on the way out; a process killed leaves it to expire.
                pipe.expire(self._wake_key, WAKE_TTL_SECONDS)
                await pipe.execute()
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc

    async def _read_loop(self) -> None:
        while True:
            streams: dict[str, str] = {self._wake_key: self._wake_cursor}
            for session_id in self._loaded:
                streams[stream_key(session_id)] = f"{await self._copy.last_id(session_id)}-0"
            try:
                reply = await self.redis.xread(streams, count=READ_COUNT, block=BLOCK_MS)  # type: ignore[arg-type]
            except RedisError as exc:
                if self.available:
                    log.error("the event bus (Redis) is unavailable: %s", exc)
                if self.available and isinstance(exc, RedisConnectionError):
                    # Redis is gone, and may come back without what this process holds: the
                    # streams end, and their clients come back to what the store has.
                    for session_id in list(self._loaded):
                        self.close(session_id)
                self.available = False
                await anyio.sleep(RETRY_SECONDS)
                continue
            if not self.available:
                log.info("the event bus (Redis) is back")
                self.available = True
            for key, entries in cast(list[tuple[bytes, Entries]], reply or []):
                name = _text(key)
                if name == self._wake_key:
                    self._wake_cursor = _text(entries[-1][0])
                    continue
                session_id = name.removeprefix(f"{PREFIX}:events:")
                if session_id in self._loaded:
                    self._copy.receive(session_id, _events(entries))
