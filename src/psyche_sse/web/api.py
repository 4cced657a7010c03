"""The JSON and raw-SSE API: start a round, follow a session, stop, health."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from .context import Context
from .inputs import event_cursor, int_field, read_fields, text_field
from .streams import JSON, follow, rounds_done, sse_response


def _events_url(session_id: str, after: int | None = None) -> str:
    url = f"/api/sessions/{session_id}/events"
    return f"{url}?after={after}" if after else url


def _prefers_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


class Api:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/healthz", self.health, methods=["GET"]),
            Route("/api/rounds", self.start_round, methods=["POST"]),
            Route("/api/sessions/{session_id}", self.session, methods=["GET"]),
            Route("/api/sessions/{session_id}/events", self.events, methods=["GET"]),
            Route("/api/sessions/{session_id}/stop", self.stop, methods=["POST"]),
        ]

    async def health(self, request: Request) -> Response:
        engine = self.ctx.engine
        return JSONResponse(
            {"status": "ok", "version": __version__, "sessions": len(engine.sessions)}
        )

    async def start_round(self, request: Request) -> Response:
        """Start a round; the response is its event stream, or 202 with where to follow it."""
        fields = await read_fields(request)
        situation = text_field(fields, "situation", required=True)
        assert situation is not None
        session_id = text_field(fields, "session_id")
        rounds = int_field(fields, "rounds", low=1, high=20) or 1
        seed = int_field(fields, "seed", low=0, high=2**31 - 1)
        session, round_id, after = await self.ctx.start_round(
            situation, session_id, rounds=rounds, seed=seed
        )
        ids = {"session_id": session.id, "round_id": round_id}
        if _prefers_json(request):
            events_url = _events_url(session.id, after)
            return JSONResponse(
                {**ids, "events_url": events_url},
                status_code=202,
                headers={"Location": events_url},
            )
        stream = follow(
            self.ctx.engine.bus,
            session.id,
            after,
            JSON,
            max_per_second=self.ctx.settings.max_deltas_per_second,
            until=rounds_done(rounds),
        )
        return sse_response(
            stream,
            self.ctx.settings,
            headers={"X-Session-Id": session.id, "X-Round-Id": round_id},
        )

    async def session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        session = await self.ctx.session(session_id)
        return JSONResponse(
            {
                "session_id": session.id,
                "title": session.title,
                "running": session.running,
                "current_round": session.current_round,
                "rounds": list(session.rounds),
                "last_event_id": self.ctx.engine.bus.last_id(session.id),
                "events_url": _events_url(session.id),
            }
        )

    async def events(self, request: Request) -> Response:
        """The session's live stream, from ``Last-Event-ID`` or ``?after=`` on; never ends."""
        session = await self.ctx.session(request.path_params["session_id"])
        after = event_cursor(request)
        stream = follow(
            self.ctx.engine.bus,
            session.id,
            after,
            JSON,
            max_per_second=self.ctx.settings.max_deltas_per_second,
        )
        return sse_response(stream, self.ctx.settings)

    async def stop(self, request: Request) -> Response:
        """Stop the session's round, or with ``turn_id`` only that agent's turn."""
        session = await self.ctx.session(request.path_params["session_id"])
        fields = await read_fields(request, allow_empty=True)
        turn_id = text_field(fields, "turn_id")
        stopped = self.ctx.engine.stop(session.id, turn_id)
        return JSONResponse({"session_id": session.id, "turn_id": turn_id, "stopped": stopped})
