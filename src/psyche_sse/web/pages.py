"""The browser's side: the page, its form and Stop buttons, and its stream of fragments.

Every route here also works without JavaScript (a plain form post is answered with a
redirect), and with htmx it answers with ``<hx-partial>`` swaps. The page of a session is
rendered from the session's events up to some id and its stream follows on from that id,
so a reload mid-turn shows the text so far and then the rest, live.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..council import MAX_STIMULUS_CHARS
from ..events import encode_sse
from ..transcript import Transcript
from .auth import account_of, user_of
from .context import Context
from .errors import HTTPError, is_htmx
from .inputs import event_cursor, id_field, int_field, path_session_id, read_fields, text_field
from .render import HTML_FORMAT, partial
from .streams import Format, sse_response


class Pages:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.renderer = ctx.renderer
        self.html = Format(HTML_FORMAT, self.renderer.encode_event)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/rounds", self.post_round, methods=["POST"]),
            Route("/s/{session_id}", self.session_page, methods=["GET"]),
            Route("/s/{session_id}/stream", self.stream, methods=["GET"]),
            Route("/s/{session_id}/stop", self.stop, methods=["POST"]),
            Route("/s/{session_id}/stimulus", self.stimulus, methods=["POST"]),
            Route("/s/{session_id}/pictures", self.pictures, methods=["GET"]),
        ]

    # --- pages ------------------------------------------------------------------------------

    def _page(
        self,
        request: Request,
        session_id: str | None,
        transcript: Transcript | None,
        *,
        title: str = "",
        running: bool = False,
        situation: str = "",
        error: str = "",
        status_code: int = 200,
    ) -> HTMLResponse:
        r = self.renderer
        title = title or self._title(transcript)
        html = r.env.get_template("page.html").render(
            account=account_of(request),
            admin=user_of(request).admin,
            title=title,
            sessionbar=r.sessionbar(session_id, title, transcript.cost_usd if transcript else None),
            conversation=self._conversation(session_id, transcript),
            status=r.status(session_id, transcript),
            emergency=r.emergency(transcript),
            composer=r.composer(
                session_id,
                running=running,
                situation=situation,
                error=error,
                autofocus=True,
                can_continue=bool(transcript and transcript.rounds),
            ),
        )
        return HTMLResponse(html, status_code=status_code)

    @staticmethod
    def _title(transcript: Transcript | None) -> str:
        if transcript and transcript.rounds:
            situation = " ".join(transcript.rounds[0].situation.split())
            return situation[:60] + ("…" if len(situation) > 60 else "")
        return ""

    def _conversation(self, session_id: str | None, transcript: Transcript | None) -> Markup:
        rounds = Markup("")
        stream_url = None
        if session_id is not None and transcript is not None:
            rounds = Markup("").join(self.renderer.round_(session_id, r) for r in transcript.rounds)
            stream_url = f"/s/{session_id}/stream?after={transcript.last_event_id}"
        return self.renderer.template(
            "_conversation.html",
            rounds=rounds,
            stream_url=stream_url,
            intro=not (transcript and transcript.rounds),
            pictures=self.renderer.pictures(transcript) if session_id is not None else "",
        )

    async def home(self, request: Request) -> Response:
        return self._page(request, None, None)

    async def session_page(self, request: Request) -> Response:
        session = await self.ctx.session(path_session_id(request), user_of(request))
        transcript = await self.ctx.transcript(session)
        return self._page(
            request,
            session.id,
            transcript,
            title=session.title,
            running=session.running or transcript.running,
        )

    # --- actions ----------------------------------------------------------------------------

    async def post_round(self, request: Request) -> Response:
        situation, session_id = "", None
        try:
            fields = await read_fields(request)
            session_id = id_field(fields, "session_id")
            situation = text_field(fields, "situation") or ""
            rounds = int_field(fields, "rounds", low=1, high=20) or 1
            # "Continue": a session and no situation go on from the session's newest run.
            go_on = session_id is not None and fields.get("continue") is not None
            started = await self.ctx.start_round(
                None if go_on else situation, session_id, rounds=rounds, user=user_of(request)
            )
            session = started.session
        except HTTPError as exc:
            if is_htmx(request) or exc.status not in (400, 402, 409, 429):
                raise
            # Without JavaScript: the page again, with the message and the text kept.
            title = ""
            if session_id is not None:
                known = await self.ctx.session(session_id, user_of(request))
                transcript = await self.ctx.transcript(known)
                running, title = known.running, known.title
            else:
                transcript, running = None, False
            page = self._page(
                request,
                session_id,
                transcript,
                title=title,
                running=running,
                # Kept to send again, unless another round is running in this session.
                situation=situation if exc.status != 409 else "",
                error=exc.message,
                status_code=exc.status,
            )
            page.headers.update(exc.headers)
            return page
        page_url = f"/s/{session.id}"
        if not is_htmx(request):
            return RedirectResponse(page_url, status_code=303)
        swaps = partial("#composer-error", "innerHTML", "")
        headers = {}
        if session_id is None:
            # A new session: the page now follows it (its stream starts at its first event)
            # and its address becomes the session's, so a reload comes back to it.
            empty = Transcript(id=session.id)
            swaps += partial("#conversation", "outerHTML", self._conversation(session.id, empty))
            swaps += partial(
                "#sessionbar", "outerHTML", self.renderer.sessionbar(session.id, session.title)
            )
            headers["HX-Push-Url"] = page_url
        return HTMLResponse(str(swaps), headers=headers)

    async def stimulus(self, request: Request) -> Response:
        """A stimulus from the page's form: it opens the session's next round."""
        session = await self.ctx.session(path_session_id(request), user_of(request))
        fields = await read_fields(request)
        text = text_field(fields, "text", required=True, max_chars=MAX_STIMULUS_CHARS)
        assert text is not None
        opens, queued = await self.ctx.inject(session, text)
        if not is_htmx(request):
            return RedirectResponse(f"/s/{session.id}", status_code=303)
        composer = self.renderer.composer(
            session.id, running=session.running, can_continue=bool(session.rounds)
        )
        note = Markup("Round {} will open with: “{}”").format(opens, queued)
        return HTMLResponse(
            str(
                partial("#composer", "outerHTML", composer)
                + partial("#stimulus-note", "innerHTML", note)
            )
        )

    async def pictures(self, request: Request) -> Response:
        """The session's pictures, as they stand now (the page loads them after a round)."""
        session = await self.ctx.session(path_session_id(request), user_of(request))
        transcript = await self.ctx.transcript(session)
        return HTMLResponse(str(self.renderer.pictures(transcript)))

    async def stop(self, request: Request) -> Response:
        session = await self.ctx.session(path_session_id(request), user_of(request))
        fields = await read_fields(request, allow_empty=True)
        await self.ctx.engine.rounds.stop(session.id, id_field(fields, "turn_id"))
        if is_htmx(request):
            return Response(status_code=204)
        return RedirectResponse(f"/s/{session.id}", status_code=303)

    # --- the stream ---------------------------------------------------------------------------

    async def stream(self, request: Request) -> Response:
        """The page's fragments from ``Last-Event-ID`` or ``?after=`` on (or, when those
        events are no longer in memory, the whole conversation again, then the rest).

        For a session that does not exist the stream says so in the page and then sends
        ``end``, the event the page's ``hx-sse:close`` names, so htmx does not reconnect.
        """
        try:
            session = await self.ctx.session(path_session_id(request), user_of(request))
            # A page from before a restart gets its conversation again, then the rest.
            stream = self.ctx.follow(session, event_cursor(request), self.html)
        except HTTPError as exc:
            return sse_response(self._gone(exc.message))
        return sse_response(stream)

    async def _gone(self, message: str) -> AsyncIterator[bytes]:
        notice = partial("#status", "innerHTML", Markup("<span>{}</span>").format(message))
        yield encode_sse(str(notice))
        yield encode_sse("", event="end")
