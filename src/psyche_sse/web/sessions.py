"""The browser's pages for stored sessions: the list, renaming, and deleting with a
confirmation.

Plain links and forms, no htmx: each works without JavaScript, and deleting always goes
through a confirmation page rendered by the server, so no script is needed to ask.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import MappingProxyType

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..engine import MAX_TITLE_CHARS, Session
from ..store import SessionSummary
from ..transcript import Status
from .auth import account_of, user_of
from .context import Context
from .errors import HTTPError
from .inputs import check_text, path_session_id, query_int, read_fields

PAGE_SIZE = 20
MAX_PAGES = 50_000
DELETED_NOTICE = "The session was deleted."

_STATES = MappingProxyType(
    {
        "running": "running",
        Status.INTERRUPTED: "interrupted",
        "cancelled": "stopped",
        "error": "errors",
    }
)


@dataclass(frozen=True)
class Line:
    """A session as the list shows it."""

    id: str
    title: str
    created: str
    updated: str
    rounds: int
    state: str  # a tag's class: running, interrupted, cancelled, error; "" when all is well
    state_text: str

    @classmethod
    def of(cls, summary: SessionSummary, running: bool) -> Line:
        # Running is the engine's to say; the store's newest round tells the rest.
        state = "running" if running else (summary.last_status or "")
        if state not in _STATES or (state == "running" and not running):
            state = ""
        return cls(
            summary.id,
            summary.title,
            summary.created,
            summary.updated,
            summary.rounds,
            state,
            _STATES.get(state, ""),
        )


def safe_next(value: object, session_id: str) -> str:
    """Where to go after renaming: the sessions list (some page of it) or the session's
    page; nothing else, so the form cannot send anyone off the site."""
    if not isinstance(value, str):
        return "/sessions"
    if value == f"/s/{session_id}" or re.fullmatch(r"/sessions(\?page=[0-9]{1,6})?", value):
        return value
    return "/sessions"


class SessionPages:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.renderer = ctx.renderer

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/sessions", self.list_page, methods=["GET"]),
            Route("/s/{session_id}/rename", self.rename_page, methods=["GET"]),
            Route("/s/{session_id}/rename", self.rename, methods=["POST"]),
            Route("/s/{session_id}/delete", self.delete_page, methods=["GET"]),
            Route("/s/{session_id}/delete", self.delete, methods=["POST"]),
        ]

    def _render(
        self, request: Request, name: str, status_code: int = 200, **context: object
    ) -> HTMLResponse:
        html = self.renderer.env.get_template(name).render(
            account=account_of(request), admin=user_of(request).admin, **context
        )
        return HTMLResponse(html, status_code=status_code)

    # --- the list -----------------------------------------------------------------------

    async def list_page(self, request: Request) -> Response:
        page = query_int(request, "page", default=1, low=1, high=MAX_PAGES)
        user = user_of(request)
        summaries, total = await self.ctx.sessions(
            user, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        lines = [Line.of(s, self._running(s.id)) for s in summaries]
        here = "/sessions" if page == 1 else f"/sessions?page={page}"
        return self._render(
            request,
            "sessions.html",
            sessions=lines,
            page=page,
            pages=max(1, math.ceil(total / PAGE_SIZE)),
            total=total,
            here=here,
            notice=DELETED_NOTICE if request.query_params.get("deleted") else "",
        )

    def _running(self, session_id: str) -> bool:
        session = self.ctx.engine.live.by_id.get(session_id)
        return session is not None and session.running

    # --- rename -------------------------------------------------------------------------

    async def rename_page(self, request: Request) -> Response:
        session = await self.ctx.session(path_session_id(request), user_of(request))
        transcript = await self.ctx.stored(session)
        return self._rename_form(
            request,
            session,
            transcript.title,
            safe_next(request.query_params.get("next"), session.id),
        )

    def _rename_form(
        self,
        request: Request,
        session: Session,
        title: str,
        next_url: str,
        error: str = "",
        status_code: int = 200,
    ) -> HTMLResponse:
        return self._render(
            request,
            "rename.html",
            status_code=status_code,
            session_id=session.id,
            title=title,
            next=next_url,
            error=error,
            max_chars=MAX_TITLE_CHARS,
        )

    async def rename(self, request: Request) -> Response:
        session = await self.ctx.session(path_session_id(request), user_of(request))
        typed, next_url = "", "/sessions"
        try:
            fields = await read_fields(request)
            next_url = safe_next(fields.get("next"), session.id)
            title = fields.get("title")
            typed = check_text("title", title) if isinstance(title, str) else ""
            await self.ctx.rename(session, typed)
        except HTTPError as exc:
            if exc.status not in (400, 422):
                raise
            # The form again, with the message and what was typed (when it can be shown).
            return self._rename_form(request, session, typed, next_url, exc.message, exc.status)
        return RedirectResponse(next_url, status_code=303)

    # --- delete -------------------------------------------------------------------------

    async def delete_page(self, request: Request) -> Response:
        """The confirmation: what would be deleted, and the one button that deletes it."""
        session = await self.ctx.session(path_session_id(request), user_of(request))
        transcript = await self.ctx.stored(session)
        return self._render(
            request,
            "delete.html",
            session_id=session.id,
            title=transcript.title,
            rounds=len(transcript.rounds),
            created=transcript.created,
            updated=transcript.updated,
            running=session.running,
        )

    async def delete(self, request: Request) -> Response:
        session = await self.ctx.session(path_session_id(request), user_of(request))
        fields = await read_fields(request, allow_empty=True)
        if fields.get("confirm") != "yes":
            # Not from the confirmation page: show it instead of deleting.
            return RedirectResponse(f"/s/{session.id}/delete", status_code=303)
        await self.ctx.delete(session)
        return RedirectResponse("/sessions?deleted=1", status_code=303)
