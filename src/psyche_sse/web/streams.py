"""The SSE writers: a session's events from any id on, as raw JSON or as page fragments.

Each client is only a cursor into the session's log on the bus. Every batch it reads has its
consecutive deltas of one turn merged into one message, and while a turn is streaming the
client reads at most ``max_deltas_per_second`` times a second, so a fast model or a slow
client costs that client fewer, longer messages, never memory, and never anyone else's time.
Each event is encoded once per format (:meth:`Event.encoded`) and those bytes are shared by
every subscriber of the format; so is each merged message (:meth:`StreamHub.encode_run`),
since the clients of a session wake together (on the same publish, or the same tick of a
shared clock when the turn streams faster than their pace) and read the same runs.

What the streams of one app share (that clock, those merged messages, the shutdown that ends
them) is its :class:`StreamHub`, which ``create_app`` makes and every :func:`follow` is given.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from types import MappingProxyType

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..bus import EventBus, Signal
from ..errors import BusUnavailable
from ..events import (
    ConversationState,
    Event,
    EventType,
    RoundComplete,
    SessionHistory,
    encode_sse,
    merge_updates,
)
from ..metrics import ServiceMetrics
from ..transcript import Status
from .security import SERVER_SEND

RETRY_MS = 2000
SSE_HEADERS = MappingProxyType(
    {
        "Cache-Control": "no-cache, no-transform",
        "X-Accel-Buffering": "no",
        "Connection": "keep-alive",
    }
)
HEARTBEAT = b": heartbeat\n\n"
# How often a streaming response looks whether its client is still there, at most. Writes
# to a closed connection cost next to nothing (uvicorn drops them), the check does not
# (a cancel scope, some 60 µs), so a gone client is noticed within this many seconds or at
# the next heartbeat.
DISCONNECT_CHECK_SECONDS = 10.0


# Merged messages kept per format: clients that read the same run of deltas share its bytes.
MERGED_CACHE_SIZE = 1024


@dataclass(frozen=True)
class Format:
    """A wire format: its cache key and how one event is encoded in it."""

    name: str
    encode: Callable[[Event], bytes]

    def __call__(self, event: Event) -> bytes:
        return event.encoded(self.name, self.encode)


def _encode_json(event: Event) -> bytes:
    return encode_sse(event.json(), event=event.type.value, id=event.id)


JSON = Format("json", _encode_json)


def runs(batch: Iterable[Event]) -> list[list[Event]]:
    """The batch cut into messages: each run of consecutive deltas of one turn together,
    every other event alone."""
    out: list[list[Event]] = []
    for event in batch:
        if (
            event.type is EventType.AGENT_PROCESSING_UPDATE
            and out
            and out[-1][-1].type is EventType.AGENT_PROCESSING_UPDATE
            and out[-1][-1].turn_id == event.turn_id
        ):
            out[-1].append(event)
        else:
            out.append([event])
    return out


History = Callable[[], Awaitable[Event]]
"""Fetches a ``session_history`` event: the conversation as stored, its id the last event
it reflects."""


class StreamHub:
    """What the streams of one app share: a pacing clock, each format's merged messages, and
    the shutdown that ends them all at once.

    ``create_app`` makes one for its app; the server that runs the app calls
    :meth:`shutdown` when it stops. A second app, in the same process or not, has its own.
    """

    def __init__(self, merged_cache_size: int = MERGED_CACHE_SIZE) -> None:
        self.ticks = _Ticks()
        self._merged_cache_size = merged_cache_size
        self._merged: dict[Format, OrderedDict[tuple[str, int, int], bytes]] = {}
        self._buses: weakref.WeakSet[EventBus] = weakref.WeakSet()
        self._stopping = False
        self._stopped = Signal()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`shutdown` was called: every stream ends, and new ones at once."""
        return self._stopping

    def shutdown(self) -> None:
        """End every open stream now (the server is stopping): from the event loop's thread."""
        self._stopping = True
        for bus in list(self._buses):
            bus.wake()
        self._stopped.set()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or until :meth:`shutdown`, whichever comes first (for streams
        that send on a clock, not on events)."""
        if not self._stopping:
            await self._stopped.wait(seconds)

    def attach(self, bus: EventBus) -> None:
        """Note that a stream reads ``bus``, so :meth:`shutdown` can wake its readers."""
        self._buses.add(bus)

    def encode_run(self, fmt: Format, events: Sequence[Event]) -> bytes:
        """A run of one turn's consecutive deltas as one message in ``fmt``.

        Clients woken by the same publish read the same run, so its merged message is
        encoded once for all of them: it is kept, by session and ids, in a small LRU per
        format.
        """
        if len(events) == 1:
            return fmt(events[0])
        merged = self._merged.setdefault(fmt, OrderedDict())
        key = (events[0].session_id, events[0].id, events[-1].id)
        encoded = merged.get(key)
        if encoded is None:
            encoded = fmt.encode(merge_updates(events))
            merged[key] = encoded
            if len(merged) > self._merged_cache_size:
                merged.popitem(last=False)
        return encoded


async def follow(
    hub: StreamHub,
    bus: EventBus,
    session_id: str,
    after: int,
    fmt: Format,
    *,
    history: History,
    max_per_second: float,
    heartbeat: float,
    until: Callable[[Event], bool] | None = None,
    metrics: ServiceMetrics | None = None,
) -> AsyncIterator[bytes]:
    """The session's events with ids above ``after``, encoded, live, with a heartbeat comment
    after ``heartbeat`` quiet seconds; ends when ``until`` says so after an event, when the
    ``hub`` shuts down, or never. ``metrics`` counts the stream while it is open, and the
    deltas it merges.

    Whenever the bus cannot hand over every event after the cursor (the cursor is from before
    a restart, older than the history kept, beyond the newest; or this client fell further
    behind than the bus keeps), the stream sends ``history()`` instead, then goes on after its
    id: the client never misses an event silently.
    """
    yield f"retry: {RETRY_MS}\n\n".encode()
    interval = 1.0 / max_per_second
    clock = asyncio.get_running_loop().time
    cursor = after
    hub.attach(bus)
    try:
        async with bus.watch(session_id):
            with metrics.viewer(fmt.name) if metrics else nullcontext():
                first, last = await bus.first_id(session_id), await bus.last_id(session_id)
                behind = not first - 1 <= cursor <= last
                streamed = -math.inf  # when the last message that ended on a delta went out
                while not hub.stopping:
                    head = b""
                    if behind:
                        behind = False
                        try:
                            snapshot, batch = await _resync(bus, session_id, history)
                        except LookupError:
                            return  # the session is gone
                        cursor = snapshot.id
                        head = fmt(snapshot)
                        if until is not None and until(snapshot):
                            yield head
                            return
                    else:
                        read = await bus.read(session_id, cursor, heartbeat)
                        if read is None:
                            return
                        batch = read
                        if (
                            batch
                            and batch[-1].type is EventType.AGENT_PROCESSING_UPDATE
                            and clock() - streamed < interval
                        ):
                            # The turn streams faster than this client's pace: its deltas go
                            # out together on the next tick of the shared clock, so a
                            # streaming turn costs a client about one message a tick, and the
                            # session's clients, woken together, read the same runs and share
                            # their encoding. A slower turn's deltas, and every other event,
                            # go out as they come: each client woken by a publish writes once.
                            await hub.ticks.wait(interval)
                            batch += await bus.history(session_id, batch[-1].id)
                        if batch and batch[0].id != cursor + 1:
                            behind = True  # this client fell further behind than the bus keeps
                            continue
                    if hub.stopping:
                        return
                    if not batch:
                        yield head or HEARTBEAT
                        continue
                    cursor = batch[-1].id
                    # One write per batch, of messages shared with every client reading the same.
                    messages = [head] if head else []
                    deltas = merged = 0
                    ended = False
                    for run in runs(batch):
                        messages.append(hub.encode_run(fmt, run))
                        if run[0].type is EventType.AGENT_PROCESSING_UPDATE:
                            deltas += len(run)
                            merged += 1
                        if until is not None and until(run[-1]):
                            ended = True
                            break
                    if deltas and metrics is not None:
                        metrics.merged(deltas, merged)
                    yield b"".join(messages)
                    if ended:
                        return
                    if batch[-1].type is EventType.AGENT_PROCESSING_UPDATE:
                        streamed = clock()

    except BusUnavailable:
        # The shared bus is away (Redis): what the store has, then the end; the client
        # comes back, and gets the live stream again once the bus is.
        try:
            snapshot = await history()
        except LookupError:
            return
        yield fmt(snapshot)


async def _resync(bus: EventBus, session_id: str, history: History) -> tuple[Event, list[Event]]:
    """The stored history and the events the bus holds after it.

    Events published while the history is read are kept (:meth:`EventBus.retain`) until they
    are taken here, so the two join with no gap whatever the history limit and the pace.
    """
    async with bus.retain(session_id):
        snapshot = await history()
        return snapshot, await bus.history(session_id, snapshot.id)


def run_done(first_index: int, rounds: int) -> Callable[[Event], bool]:
    """``until`` for a run of ``rounds`` rounds from round number ``first_index``: the
    ``conversation_state`` (a round's last event) of its last round, or of a round of it
    that was stopped; told by an event or by a history."""
    last_index = first_index + rounds - 1
    stopped: set[int] = set()

    def ends(index: int) -> bool:
        return index >= last_index or (index >= first_index and index in stopped)

    def done(event: Event) -> bool:
        payload = event.payload
        if isinstance(payload, RoundComplete) and payload.status is Status.CANCELLED:
            stopped.add(payload.index)
        elif isinstance(payload, ConversationState):
            return ends(payload.round)
        elif isinstance(payload, SessionHistory):
            for r in payload.transcript.rounds:
                if r.status is Status.CANCELLED:
                    stopped.add(r.index)
            return any(
                (r.state is not None or r.status is Status.INTERRUPTED) and ends(r.index)
                for r in payload.transcript.rounds
            )
        return False

    return done


def sse_response(
    source: AsyncIterator[bytes], *, headers: Mapping[str, str] | None = None
) -> EventStream:
    """An event stream of ``source`` with the no-buffering headers."""
    return EventStream(source, headers={**SSE_HEADERS, **(headers or {})})


class EventStream(Response):
    """A ``text/event-stream`` response that costs a client the request's task and one more.

    sse-starlette's ``EventSourceResponse`` runs four tasks per client (writer, heartbeat,
    disconnect watch, shutdown watch); an idle client then holds about 41 KB against 23 KB
    here (``make bench``), and each message passes a cancel scope. Here the source makes its own
    heartbeats (:func:`follow`), a gone client is noticed within ``DISCONNECT_CHECK_SECONDS``
    (uvicorn drops writes to a closed connection silently), and :meth:`StreamHub.shutdown`
    ends every stream when the server stops.
    """

    media_type = "text/event-stream"

    def __init__(self, source: AsyncIterator[bytes], headers: Mapping[str, str]) -> None:
        self.source = source
        self.status_code = 200
        self.background = None
        self.init_headers(headers)  # with Content-Type; no Content-Length: it streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The start through the middleware (its headers; Starlette's note that a response
        # started); the body straight to the server, past the middleware's wrappers of
        # ``send``, which look at the start alone (a body-rewriting middleware, such as
        # gzip, would not see it). In a task of its own: each message then resumes only
        # that task's few frames, not the whole middleware stack's (a crowded session's
        # hot path: a message to each viewer). Cancelling the request cancels it.
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        body = scope.get(SERVER_SEND, send)
        await asyncio.ensure_future(self._send_body(scope, receive, body))

    async def _send_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        clock = asyncio.get_running_loop().time
        checked = clock()
        try:
            if scope["method"] == "HEAD":  # the headers only: this body would never end
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            async for chunk in self.source:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                now = clock()
                if chunk is HEARTBEAT or now - checked >= DISCONNECT_CHECK_SECONDS:
                    checked = now
                    if await Request(scope, receive).is_disconnected():
                        return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            return  # the client went away (servers speaking ASGI 2.4 say so on write)
        finally:
            closing = getattr(self.source, "aclose", None)
            if closing is not None:
                with anyio.CancelScope(shield=True):
                    await closing()


class _Ticks:
    """A clock shared by the streams of a hub: those waiting for the next tick of an interval
    all wait on one signal and one timer, rather than a timer each.

    Ticks are numbered (tick ``k`` is due at ``k * interval`` on the loop's clock) and each
    one fires once: a wait that starts at the instant a tick fired waits for the next one,
    even where the clock reads a little early (uvloop's has millisecond resolution).
    """

    def __init__(self) -> None:
        self._next: dict[float, tuple[asyncio.AbstractEventLoop, Signal]] = {}
        self._last: dict[float, tuple[asyncio.AbstractEventLoop, int]] = {}

    async def wait(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        entry = self._next.get(interval)
        if entry is None or entry[0] is not loop:  # none yet, or one of a loop now gone
            entry = self._next[interval] = (loop, Signal())
            tick = math.floor(loop.time() / interval) + 1
            last = self._last.get(interval)
            if last is not None and last[0] is loop and tick <= last[1]:
                tick = last[1] + 1
            self._last[interval] = (loop, tick)
            loop.call_at(tick * interval, self._fire, interval, entry)
        await entry[1].wait()

    def _fire(self, interval: float, entry: tuple[asyncio.AbstractEventLoop, Signal]) -> None:
        if self._next.get(interval) is entry:
            del self._next[interval]
        entry[1].set()
