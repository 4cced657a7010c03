"""The JSON and raw-SSE API: rounds, a session's stream, stopping, the stored sessions
(list, transcript, rename, delete, export), health."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import __version__, llm
from ..council import MAX_STIMULUS_CHARS
from ..engine import Session
from ..export import FORMATS, export
from ..store import SessionSummary
from ..store.previews import Preview
from ..store.search import SearchHit
from ..transcript import Transcript
from .auth import user_of
from .context import Context
from .errors import HTTPError
from .inputs import (
    check_text,
    event_cursor,
    id_field,
    int_field,
    path_session_id,
    query_int,
    read_fields,
    text_field,
)
from .search import highlight, search_terms
from .streams import JSON, run_done, sse_response

DEFAULT_PAGE = 20
MAX_PAGE = 100
MAX_OFFSET = 1_000_000


def _events_url(session_id: str, after: int | None = None) -> str:
    url = f"/api/sessions/{session_id}/events"
    return f"{url}?after={after}" if after else url


def export_urls(session_id: str) -> dict[str, str]:
    return {fmt: f"/api/sessions/{session_id}/export.{fmt}" for fmt in FORMATS}


def session_json(session: Session, transcript: Transcript) -> dict[str, Any]:
    """The session's whole transcript, what it is doing, and where to follow it from.

    Running if it runs here or the transcript has its last round running, as the session's
    page says (a run that ended while the transcript was read, or one running on another
    worker): never said ended with its end not in the transcript yet."""
    last = transcript.last_round
    running_round = last.id if last is not None and last.running else None
    return {
        "session_id": session.id,
        **transcript.to_dict(),
        "running": session.running or transcript.running,
        "current_round": session.current_round or running_round,
        # Its events after the transcript's last one: live, with no gap and no duplicate.
        "events_url": _events_url(session.id, transcript.last_event_id),
        "page_url": f"/s/{session.id}",
        "exports": export_urls(session.id),
    }


def summary_json(
    summary: SessionSummary, running: bool, preview: Preview | None = None
) -> dict[str, Any]:
    return {
        "id": summary.id,
        "title": summary.title,
        "created": summary.created,
        "updated": summary.updated,
        "rounds": summary.rounds,
        "last_status": summary.last_status,
        "running": running,
        "url": f"/api/sessions/{summary.id}",
        "page_url": f"/s/{summary.id}",
        "preview": preview.line() if preview is not None else "",
    }


def hit_json(hit: SearchHit, running: bool) -> dict[str, Any]:
    """A search result: the session as the list has it, and the passage that matches
    (``html``: escaped, the matches in ``<mark>``)."""
    return {
        **summary_json(hit.session, running),
        "snippet": {
            "in": hit.kind,
            "agent_id": hit.agent_id,
            "text": hit.text,
            "html": str(highlight(hit.passage)),
        },
    }


def _prefers_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


class Api:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/healthz", self.health, methods=["GET"]),
            Route("/api/whoami", self.whoami, methods=["GET"]),
            Route("/api/rounds", self.start_round, methods=["POST"]),
            Route("/api/sessions", self.list_sessions, methods=["GET"]),
            Route("/api/sessions/{session_id}", self.session, methods=["GET"]),
            Route("/api/sessions/{session_id}", self.rename, methods=["PATCH"]),
            Route("/api/sessions/{session_id}", self.delete, methods=["DELETE"]),
            Route("/api/sessions/{session_id}/events", self.events, methods=["GET"]),
            Route("/api/sessions/{session_id}/stop", self.stop, methods=["POST"]),
            Route("/api/sessions/{session_id}/stimulus", self.stimulus, methods=["POST"]),
            Route("/api/sessions/{session_id}/export.{fmt}", self.export, methods=["GET"]),
        ]

    async def health(self, request: Request) -> Response:
        engine = self.ctx.engine
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                # "loading" for a few seconds after start: a round begun then waits for it.
                "llm": "ready" if llm.ready() else "loading",
                "sessions": len(engine.live.by_id),
                # This worker's share: rounds it runs now, and what it does among several.
                "running": engine.live.running,
                "role": self.ctx.settings.role,
            }
        )

    async def whoami(self, request: Request) -> Response:
        """The request as the server sees it: behind a proxy, whether the proxy is trusted
        (``PSYCHE_TRUSTED_PROXIES``) shows in ``client`` and ``scheme``."""
        client = request.client.host if request.client else None
        return JSONResponse(
            {"client": client, "scheme": request.url.scheme, "user": user_of(request).name}
        )

    async def start_round(self, request: Request) -> Response:
        """Start a round; the response is its event stream, or 202 with where to follow it."""
        fields = await read_fields(request)
        session_id = id_field(fields, "session_id")
        # With a session and no situation, the run continues the session's newest one.
        situation = text_field(fields, "situation", required=session_id is None)
        rounds = int_field(fields, "rounds", low=1, high=20) or 1
        seed = int_field(fields, "seed", low=0, high=2**31 - 1)
        stimulus = text_field(fields, "stimulus", max_chars=MAX_STIMULUS_CHARS)
        started = await self.ctx.start_round(
            situation,
            session_id,
            rounds=rounds,
            seed=seed,
            stimulus=stimulus,
            user=user_of(request),
        )
        session, round_id = started.session, started.round_id
        ids = {"session_id": session.id, "round_id": round_id}
        if _prefers_json(request):
            events_url = _events_url(session.id, started.after)
            return JSONResponse(
                {**ids, "events_url": events_url},
                status_code=202,
                headers={"Location": events_url},
            )
        stream = self.ctx.follow(
            session, started.after, JSON, until=run_done(started.first_index, rounds)
        )
        return sse_response(
            stream,
            headers={"X-Session-Id": session.id, "X-Round-Id": round_id},
        )

    async def list_sessions(self, request: Request) -> Response:
        """The stored sessions, the most recently active first, ``limit`` at a time; with
        ``q``, those whose situations, stimuli or replies hold its words, each with the
        passage that matches."""
        limit = query_int(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
        offset = query_int(request, "offset", default=0, low=0, high=MAX_OFFSET)
        query = request.query_params.get("q")
        user = user_of(request)
        found: list[dict[str, Any]]
        if query is not None:
            result = await self.ctx.search(user, search_terms(query), limit=limit, offset=offset)
            total = result.total
            found = [hit_json(h, self._running(h.session.id)) for h in result.hits]
        else:
            summaries, total = await self.ctx.sessions(user, limit=limit, offset=offset)
            said = await self.ctx.engine.archive.previews([s.id for s in summaries])
            found = [summary_json(s, self._running(s.id), said.get(s.id)) for s in summaries]

        def page(at: int) -> str:
            params: dict[str, str | int] = {"q": query} if query is not None else {}
            return f"/api/sessions?{urlencode({**params, 'limit': limit, 'offset': at})}"

        return JSONResponse(
            {
                "sessions": found,
                "total": total,
                "limit": limit,
                "offset": offset,
                "next": page(offset + limit) if offset + limit < total else None,
                "previous": page(max(0, offset - limit)) if offset else None,
            }
        )

    def _running(self, session_id: str) -> bool:
        session = self.ctx.engine.live.by_id.get(session_id)
        return session is not None and session.running

    async def session(self, request: Request) -> Response:
        """The session's whole transcript (running turns with their text so far)."""
        session = await self.ctx.session(path_session_id(request), user_of(request))
        return JSONResponse(session_json(session, await self.ctx.stored(session)))

    async def rename(self, request: Request) -> Response:
        """``{"title": ...}``: the new title (one line, at most 200 characters)."""
        session = await self.ctx.session(path_session_id(request), user_of(request))
        fields = await read_fields(request)
        title = fields.get("title")
        if not isinstance(title, str):
            raise HTTPError(422, 'send the new title as a string: {"title": "..."}')
        check_text("title", title)
        stored = await self.ctx.rename(session, title)
        return JSONResponse({"session_id": session.id, "title": stored})

    async def delete(self, request: Request) -> Response:
        """Delete the session for good; a round it is running is stopped first."""
        session = await self.ctx.session(path_session_id(request), user_of(request))
        await self.ctx.delete(session)
        return Response(status_code=204)

    async def export(self, request: Request) -> Response:
        """The transcript as a file to download: ``export.json``, ``.md`` or ``.html``."""
        fmt = request.path_params["fmt"]
        if fmt not in FORMATS:
            raise HTTPError(404, f"there is no {fmt!r} export; use {', '.join(FORMATS)}")
        session = await self.ctx.session(path_session_id(request), user_of(request))
        file = export(await self.ctx.stored(session), fmt)
        return Response(
            file.body,
            media_type=file.media_type,
            headers={"Content-Disposition": file.content_disposition},
        )

    async def events(self, request: Request) -> Response:
        """The session's live stream, from ``Last-Event-ID`` or ``?after=`` on; never ends.

        A client the bus cannot replay to (its id is from before a restart, say) first
        gets the whole history as one ``session_history`` event.
        """
        session = await self.ctx.session(path_session_id(request), user_of(request))
        stream = self.ctx.follow(session, event_cursor(request), JSON)
        return sse_response(stream)

    async def stimulus(self, request: Request) -> Response:
        """``text`` (at most 500 characters) opens the session's next round: 202 with the
        number of that round."""
        session = await self.ctx.session(path_session_id(request), user_of(request))
        fields = await read_fields(request)
        text = text_field(fields, "text", required=True)
        assert text is not None
        opens, queued = await self.ctx.inject(session, text)
        return JSONResponse(
            {"session_id": session.id, "round": opens, "text": queued},
            status_code=202,
        )

    async def stop(self, request: Request) -> Response:
        """Stop the session's round, or with ``turn_id`` only that agent's turn."""
        session = await self.ctx.session(path_session_id(request), user_of(request))
        fields = await read_fields(request, allow_empty=True)
        turn_id = id_field(fields, "turn_id")
        stopped = await self.ctx.engine.rounds.stop(session.id, turn_id)
        return JSONResponse({"session_id": session.id, "turn_id": turn_id, "stopped": stopped})
