"""The browser's pages for stored sessions: the list (each with a line of what was said
last), searching it, renaming, and deleting with a confirmation.

Plain links and forms, no htmx: each works without JavaScript, and deleting always goes
through a confirmation page rendered by the server, so no script is needed to ask.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..engine import MAX_TITLE_CHARS, Session
from ..store import SessionSummary
from ..store.previews import Preview
from ..store.search import SearchHit
from ..transcript import Status
from .auth import account_of, user_of
from .context import Context
from .errors import HTTPError
from .inputs import check_text, path_session_id, query_int, read_fields
from .search import MAX_QUERY_CHARS, highlight, search_terms

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
    preview: str = ""
    """What was said last, in one line (the list)."""
    passage: Markup = field(default_factory=Markup)
    """The passage that matches, its matches marked (search results)."""
    found_in: str = ""
    """Where the passage is: "Shadow's reply", "the situation", "a stimulus"."""

    @classmethod
    def of(cls, summary: SessionSummary, running: bool, preview: Preview | None = None) -> Line:
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
            preview.line() if preview is not None else "",
        )

    @classmethod
    def found(cls, hit: SearchHit, running: bool) -> Line:
        return replace(
            cls.of(hit.session, running), passage=highlight(hit.passage), found_in=found_in(hit)
        )


def found_in(hit: SearchHit) -> str:
    """Where a search hit's passage is, for a person to read."""
    if hit.kind == "reply":
        return f"{hit.agent_id}'s reply" if hit.agent_id else "a reply"
    return "a stimulus" if hit.kind == "stimulus" else "the situation"


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
        query = request.query_params.get("q")
        if query is not None:
            return await self._search_page(request, query, page)
        summaries, total = await self.ctx.sessions(
            user, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        said = await self.ctx.engine.archive.previews([s.id for s in summaries])
        lines = [Line.of(s, self._running(s.id), said.get(s.id)) for s in summaries]
        here = "/sessions" if page == 1 else f"/sessions?page={page}"
        return self._list(
            request,
            lines,
            page=page,
            total=total,
            here=here,
            notice=DELETED_NOTICE if request.query_params.get("deleted") else "",
        )

    async def _search_page(self, request: Request, query: str, page: int) -> Response:
        """The sessions that hold what was searched for, each with its matching passage;
        the form again with the reason, as a 400, when the search cannot be run."""
        try:
            terms = search_terms(query)
        except HTTPError as exc:
            shown = query if len(query) <= MAX_QUERY_CHARS else ""
            return self._list(request, [], query=shown, error=exc.message, status_code=exc.status)
        found = await self.ctx.search(
            user_of(request), terms, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        lines = [Line.found(hit, self._running(hit.session.id)) for hit in found.hits]
        return self._list(
            request, lines, page=page, total=found.total, query=query, here="/sessions"
        )

    def _list(
        self,
        request: Request,
        lines: list[Line],
        *,
        page: int = 1,
        total: int = 0,
        here: str = "/sessions",
        query: str | None = None,
        notice: str = "",
        error: str = "",
        status_code: int = 200,
    ) -> HTMLResponse:
        def page_url(number: int) -> str:
            params: dict[str, str | int] = {"q": query} if query is not None else {}
            return f"/sessions?{urlencode({**params, 'page': number})}"

        return self._render(
            request,
            "sessions.html",
            status_code=status_code,
            sessions=lines,
            page=page,
            pages=max(1, math.ceil(total / PAGE_SIZE)),
            total=total,
            here=here,
            notice=notice,
            query=query,
            error=error,
            page_url=page_url,
            max_query=MAX_QUERY_CHARS,
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
