"""The SSE writers: a session's events from any id on, as raw JSON or as page fragments.

Each client is only a cursor into the session's log on the bus. Every batch it reads has its
consecutive deltas of one turn merged into one message, and while a turn is streaming the
client reads at most ``max_deltas_per_second`` times a second, so a fast model or a slow
client costs that client fewer, longer messages, never memory, and never anyone else's time.
Each event is encoded once per format (:meth:`Event.encoded`) and those bytes are shared by
every subscriber of the format; only merged messages are encoded per client.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..bus import EventBus
from ..config import Settings
from ..events import Event, EventType, encode_sse, merge_updates

RETRY_MS = 2000
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


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


def coalesce(batch: Iterable[Event]) -> list[Event]:
    """The batch with each run of consecutive deltas of one turn merged into one event."""
    out: list[Event] = []
    run: list[Event] = []
    for event in batch:
        if event.type is EventType.AGENT_PROCESSING_UPDATE:
            if run and run[-1].turn_id != event.turn_id:
                out.append(merge_updates(run))
                run = []
            run.append(event)
            continue
        if run:
            out.append(merge_updates(run))
            run = []
        out.append(event)
    if run:
        out.append(merge_updates(run))
    return out


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
            for event in coalesce(batch):
                yield fmt(event)
                if until is not None and until(event):
                    return
            if batch[-1].type is EventType.AGENT_PROCESSING_UPDATE:
                # The turn is still streaming: let its next deltas gather into one message.
                await anyio.sleep(interval)
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
