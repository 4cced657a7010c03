"""Read-only links to one session: making and revoking them (the owner's page and the API),
and the shared page anyone with the link opens, live, without an account.

A link is ``/shared/<token>``: 256 random bits (:func:`secrets.token_urlsafe`), of which
only a hash is stored. The shared page shows the session and nothing else: no other session,
no form, no Stop or Skip (its fragments come from a :class:`Renderer` made ``shared``), no
link into the rest of the site; and it asks not to be indexed.

A revoked link answers 404 at once, and its open streams end within :data:`POLL_SECONDS`:
those of this server at once, those of any other server sharing the database when its
:class:`ShareWatch` next reads which links still work.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial as bind
from itertools import count

import anyio
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ..accounts import token_hash
from ..engine import Session
from ..errors import SessionNotFound, StoreError
from ..events import encode_sse, utc_now
from ..store import Store
from ..store import shares as sql
from ..store.shares import ShareRecord
from ..transcript import Transcript
from .auth import User, account_of, user_of
from .context import Context
from .errors import HTTPError
from .inputs import event_cursor, path_session_id
from .render import Renderer, partial
from .streams import SSE_HEADERS, Format, sse_response

log = logging.getLogger(__name__)

TOKEN_BYTES = 32
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,128}")
POLL_SECONDS = 1.0
NOINDEX = "noindex, nofollow"
GONE = "It was never made, or the session is no longer shared."
REVOKED = "This link no longer works: the session is no longer shared."


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def shared_path(token: str) -> str:
    return f"/shared/{token}"


@dataclass(frozen=True, slots=True)
class Held:
    digest: str
    session_id: str
    scope: anyio.CancelScope


class ShareWatch:
    """The shared streams open on this server, each ended when its link stops working."""

    def __init__(self) -> None:
        self._held: dict[int, Held] = {}
        self._ids = count()

    @contextmanager
    def holding(self, digest: str, session_id: str) -> Iterator[anyio.CancelScope]:
        """A cancel scope for a stream on the link ``digest``: cancelled when it is revoked."""
        scope = anyio.CancelScope()
        key = next(self._ids)
        self._held[key] = Held(digest, session_id, scope)
        try:
            with scope:
                yield scope
        finally:
            del self._held[key]

    def end(self, session_id: str, keep: str | None = None) -> None:
        """The session's links other than ``keep`` were revoked here: end their streams."""
        for held in list(self._held.values()):
            if held.session_id == session_id and held.digest != keep:
                held.scope.cancel()

    async def check(self, store: Store) -> None:
        """End the streams whose link no longer works (revoked by any server)."""
        if not self._held:
            return
        digests = {held.digest for held in self._held.values()}
        live = await store.run(bind(sql.live_digests, digests=digests))
        for held in list(self._held.values()):
            if held.digest not in live:
                held.scope.cancel()

    async def run(self, store_of: Callable[[], Store | None]) -> None:
        """Forever: :meth:`check` once every :data:`POLL_SECONDS` while streams are open."""
        while True:
            await anyio.sleep(POLL_SECONDS)
            store = store_of()
            if store is None:
                continue
            try:
                await self.check(store)
            except Exception:
                log.exception("cannot read which shared links still work")

    @property
    def open(self) -> int:
        return len(self._held)


class SharedStream(Response):
    """A shared page's event stream, ended with a notice (and ``end``, so htmx does not
    reconnect) when its link is revoked."""

    def __init__(self, stream: Response, watch: ShareWatch, digest: str, session_id: str) -> None:
        self.stream = stream
        self.watch = watch
        self.digest = digest
        self.session_id = session_id
        self.status_code = stream.status_code
        self.background = None
        self.raw_headers = stream.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.watch.holding(self.digest, self.session_id) as held:
            await self.stream(scope, receive, send)
        if held.cancelled_caught:
            with suppress(OSError, RuntimeError):  # the client left, or the response ended
                await send({"type": "http.response.body", "body": _revoked(), "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})


def _revoked() -> bytes:
    notice = partial("#status", "innerHTML", Markup("<span>{}</span>").format(REVOKED))
    return encode_sse(str(notice)) + encode_sse("", event="end")


def may_share(session: Session, user: User) -> bool:
    """Only a session's owner makes a link to it (with no accounts: the local user)."""
    return session.owner == user.id


class SharePages:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.renderer = Renderer(ctx.settings, shared=True)
        self.html = Format("shared-html", self.renderer.encode_event)
        self.watch = ShareWatch()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/sessions/{session_id}/share", self.api_status, methods=["GET"]),
            Route("/api/sessions/{session_id}/share", self.api_share, methods=["POST"]),
            Route("/api/sessions/{session_id}/share", self.api_unshare, methods=["DELETE"]),
            Route("/s/{session_id}/share", self.share_page, methods=["GET"]),
            Route("/s/{session_id}/share", self.share, methods=["POST"]),
            Route("/s/{session_id}/unshare", self.unshare, methods=["POST"]),
            Route("/shared/{token}", self.shared_page, methods=["GET"]),
            Route("/shared/{token}/stream", self.shared_stream, methods=["GET"]),
        ]

    async def run(self) -> None:
        """The watch that ends streams of links revoked elsewhere (for the app's life)."""

        def store() -> Store | None:
            try:
                return self.ctx.engine.store
            except HTTPError:
                return None  # starting or stopping

        await self.watch.run(store)

    # --- the owner's side -----------------------------------------------------------------

    async def _owned(self, request: Request) -> tuple[Session, User]:
        user = user_of(request)
        return await self.ctx.session(path_session_id(request), user), user

    async def _create(self, session: Session, user: User) -> tuple[str, ShareRecord]:
        if not may_share(session, user):
            raise HTTPError(403, "only the session's owner can share it", code="not_owner")
        token = new_token()
        digest = token_hash(token)
        try:
            record = await self.ctx.engine.store.write(
                bind(
                    sql.replace_share,
                    session_id=session.id,
                    digest=digest,
                    now=utc_now(),
                    user_id=user.id,
                )
            )
        except StoreError:
            # Not saved yet (its first round is starting), or deleted meanwhile.
            raise HTTPError(
                409, "the session is not saved yet; try again in a moment", code="not_saved"
            ) from None
        self.watch.end(session.id, keep=digest)
        return token, record

    async def _revoke(self, session: Session) -> int:
        revoked = await self.ctx.engine.store.write(bind(sql.revoke_shares, session_id=session.id))
        self.watch.end(session.id)
        return revoked

    async def _record(self, session: Session) -> ShareRecord | None:
        return await self.ctx.engine.store.run(bind(sql.share_of, session_id=session.id))

    async def api_status(self, request: Request) -> Response:
        """Whether the session is shared, and since when (the link itself is not kept)."""
        session, _ = await self._owned(request)
        record = await self._record(session)
        return JSONResponse(
            {
                "session_id": session.id,
                "shared": record is not None,
                "created": record.created if record else None,
            }
        )

    async def api_share(self, request: Request) -> Response:
        """A new read-only link to the session (201); any link it had stops working. The
        link is in this answer only: it is not stored, only its hash."""
        session, user = await self._owned(request)
        token, record = await self._create(session, user)
        path = shared_path(token)
        return JSONResponse(
            {
                "session_id": session.id,
                "url": str(request.base_url).rstrip("/") + path,
                "path": path,
                "created": record.created,
            },
            status_code=201,
            headers={"Location": path, "Cache-Control": "no-store"},
        )

    async def api_unshare(self, request: Request) -> Response:
        """Stop sharing the session: its link answers 404, its open streams end (204)."""
        session, _ = await self._owned(request)
        await self._revoke(session)
        return Response(status_code=204)

    def _share_form(
        self,
        request: Request,
        session: Session,
        *,
        record: ShareRecord | None = None,
        token: str = "",
        stopped: bool = False,
    ) -> HTMLResponse:
        user = user_of(request)
        html = self.ctx.renderer.env.get_template("share.html").render(
            account=account_of(request),
            admin=user.admin,
            session_id=session.id,
            title=session.title,
            owner=may_share(session, user),
            shared=record,
            link=str(request.base_url).rstrip("/") + shared_path(token) if token else "",
            path=shared_path(token) if token else "",
            stopped=stopped,
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def share_page(self, request: Request) -> Response:
        session, _ = await self._owned(request)
        record = await self._record(session)
        stopped = request.query_params.get("stopped") == "1"
        return self._share_form(request, session, record=record, stopped=stopped)

    async def share(self, request: Request) -> Response:
        """From the share page's button: a new link, shown once, to copy."""
        session, user = await self._owned(request)
        token, _ = await self._create(session, user)
        return self._share_form(request, session, token=token)

    async def unshare(self, request: Request) -> Response:
        session, _ = await self._owned(request)
        await self._revoke(session)
        return RedirectResponse(f"/s/{session.id}/share?stopped=1", status_code=303)

    # --- the shared page ------------------------------------------------------------------

    async def _find(self, token: str) -> tuple[str, Session] | None:
        """The link's hash and the session it opens; None when it opens none."""
        if not TOKEN_SHAPE.fullmatch(token):
            return None
        digest = token_hash(token)
        session_id = await self.ctx.engine.store.run(bind(sql.shared_session, digest=digest))
        if session_id is None:
            return None
        try:
            return digest, await self.ctx.engine.live.load(session_id)
        except SessionNotFound:
            return None

    def _gone(self) -> HTMLResponse:
        html = self.renderer.env.get_template("shared.html").render(
            gone=GONE, title="", account=None
        )
        return HTMLResponse(
            html, status_code=404, headers={"X-Robots-Tag": NOINDEX, "Cache-Control": "no-store"}
        )

    async def shared_page(self, request: Request) -> Response:
        """The session, read only, following it live; ``?part=pictures``: its pictures as
        they stand now (what the page fetches after each round)."""
        token = request.path_params["token"]
        found = await self._find(token)
        if found is None:
            return self._gone()
        _, session = found
        transcript = await self.ctx.transcript(session)
        headers = {"X-Robots-Tag": NOINDEX, "Cache-Control": "no-store"}
        r = self.renderer
        if request.query_params.get("part") == "pictures":
            return HTMLResponse(str(r.pictures(transcript)), headers=headers)
        rounds = Markup("").join(r.round_(session.id, rnd) for rnd in transcript.rounds)
        conversation = r.template(
            "_conversation.html",
            rounds=rounds,
            stream_url=f"{shared_path(token)}/stream?after={transcript.last_event_id}",
            intro=False,
            pictures=r.pictures(transcript),
        )
        html = r.env.get_template("shared.html").render(
            gone="",
            account=None,
            title=session.title or _title(transcript),
            conversation=conversation,
            status=r.status(session.id, transcript),
            emergency=r.emergency(transcript),
        )
        return HTMLResponse(html, headers=headers)

    async def shared_stream(self, request: Request) -> Response:
        """The shared page's fragments from ``Last-Event-ID`` or ``?after=`` on, live, with
        no control in them; a 404 (saying so, then ``end``) for a link that does not work."""
        found = await self._find(request.path_params["token"])
        if found is None:
            return Response(
                _revoked(),
                status_code=404,
                media_type="text/event-stream",
                headers={**SSE_HEADERS, "X-Robots-Tag": NOINDEX},
            )
        digest, session = found
        try:
            after = event_cursor(request)
        except HTTPError as exc:
            raise HTTPError(exc.status, exc.message, headers={"X-Robots-Tag": NOINDEX}) from None
        stream = self.ctx.follow(session, after, self.html)
        response = sse_response(stream, headers={"X-Robots-Tag": NOINDEX})
        return SharedStream(response, self.watch, digest, session.id)


def _title(transcript: Transcript) -> str:
    situation = " ".join(transcript.rounds[0].situation.split()) if transcript.rounds else ""
    return situation[:60] + ("…" if len(situation) > 60 else "")
