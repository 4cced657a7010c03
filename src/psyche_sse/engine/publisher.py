"""Publishing: the one way a session's events go out, numbered, and into the store."""

from __future__ import annotations

from ..bus import EventBus
from ..events import Event, Payload
from ..metrics import ServiceMetrics
from ..store import Recorder
from .live import LiveSessions


class Publisher:
    """Publishes a session's events on the bus and has the recorder save them.

    Before an event gets its id, the recorder makes sure the store has reserved it, so ids
    stay strictly increasing across a crash and a restart. Every event is counted in the
    metrics.
    """

    def __init__(
        self, bus: EventBus, recorder: Recorder, live: LiveSessions, metrics: ServiceMetrics
    ) -> None:
        self.bus = bus
        self.recorder = recorder
        self.live = live
        self.metrics = metrics

    async def __call__(self, payload: Payload) -> Event:
        session_id = payload.session_id
        session = self.live.get(session_id)
        ceiling = await self.recorder.reserve(
            session_id,
            await self.bus.last_id(session_id) + 1,
            session.title if session else "",
            session.owner if session else None,
        )
        self.bus.reserved(session_id, ceiling)
        event = await self.bus.publish(payload)
        self.recorder.observe(event)
        self.metrics.observe(event)
        return event
