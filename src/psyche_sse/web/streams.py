"""The SSE writers: a session's events from any id on, as raw JSON or as page fragments.

Each client is only a cursor into the session's log on the bus. Every batch it reads has its
consecutive deltas of one turn merged into one message, and while a turn is streaming the
client reads at most ``max_deltas_per_second`` times a second, so a fast model or a slow
client costs that client fewer, longer messages, never memory, and never anyone else's time.
Each event is encoded once per format (:meth:`Event.encoded`) and those bytes are shared by
every subscriber of the format; so is each merged message (:meth:`Format.run`), since the
clients of a session wake on the same clock tick and read the same runs.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..bus import EventBus
from ..config import Settings
from ..events import Event, EventType, encode_sse, merge_updates

RETRY_MS = 2000
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


# Merged messages kept per format: clients that read the same run of deltas share its bytes.
MERGED_CACHE_SIZE = 1024


@dataclass(frozen=True)
class Format:
    """A wire format: its cache key and how one event is encoded in it."""

    name: str
    encode: Callable[[Event], bytes]
    _merged: OrderedDict[tuple[str, int, int], bytes] = field(
        default_factory=OrderedDict, compare=False, repr=False
    )

    def __call__(self, event: Event) -> bytes:
        return event.encoded(self.name, self.encode)

    def run(self, events: Sequence[Event]) -> bytes:
        """A run of one turn's consecutive deltas as one message.

        Clients woken by the same publish read the same run, so its merged message is
        encoded once for all of them: it is kept, by session and ids, in a small LRU.
        """
        if len(events) == 1:
            return self(events[0])
        key = (events[0].session_id, events[0].id, events[-1].id)
        encoded = self._merged.get(key)
        if encoded is None:
            encoded = self.encode(merge_updates(events))
            self._merged[key] = encoded
            if len(self._merged) > MERGED_CACHE_SIZE:
                self._merged.popitem(last=False)
        return encoded


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


def coalesce(batch: Iterable[Event]) -> list[Event]:
    """The batch with each run of consecutive deltas of one turn merged into one event."""
    return [merge_updates(run) for run in runs(batch)]


async def follow(
    bus: EventBus,
    session_id: str,
    after: int,
    fmt: Format,
    *,
    max_per_second: float,
    until: Callable[[Event], bool] | None = None,
    preamble: bytes = b"",
) -> AsyncIterator[bytes]:
    """The session's events with ids above ``after``, encoded, live; ends when ``until``
    says so after an event, or never."""
    yield preamble + f"retry: {RETRY_MS}\n\n".encode()
    interval = 1.0 / max_per_second
    batches = bus.subscribe(session_id, after)
    closing = getattr(batches, "aclose", None)
    try:
        async for batch in batches:
            # One write per batch, of messages shared with every client reading the same.
            messages = []
            for run in runs(batch):
                messages.append(fmt.run(run))
                if until is not None and until(run[-1]):
                    yield b"".join(messages)
                    return
            yield b"".join(messages)
            if batch[-1].type is EventType.AGENT_PROCESSING_UPDATE:
                # The turn is still streaming: let its next deltas gather into one message.
                # Sleeping to the next tick of a shared clock wakes this session's clients
                # together, so they read the same runs and share their encoding.
                await anyio.sleep(interval - anyio.current_time() % interval)
    finally:
        if closing is not None:
            with contextlib.suppress(RuntimeError):
                await closing()


def rounds_done(rounds: int) -> Callable[[Event], bool]:
    """``until`` for a run of ``rounds`` rounds: the last one complete, or one stopped."""
    remaining = rounds

    def done(event: Event) -> bool:
        nonlocal remaining
        if event.type is not EventType.ROUND_COMPLETE:
            return False
        remaining -= 1
        return remaining <= 0 or event.data.get("status") == "cancelled"

    return done


def sse_response(
    source: AsyncIterator[bytes],
    settings: Settings,
    *,
    headers: Mapping[str, str] | None = None,
) -> EventSourceResponse:
    """An event stream with heartbeats, the no-buffering headers, and our encoding."""
    return EventSourceResponse(
        source,
        headers={**SSE_HEADERS, **(headers or {})},
        ping=settings.heartbeat,
        sep="\n",
        ping_message_factory=lambda: ServerSentEvent(comment="heartbeat", sep="\n"),
    )
