"""The authentication middleware: who each request acts as, and what someone not signed in
is told.

Pure ASGI, so event streams pass through untouched: a request is checked once, when it
arrives (a dictionary lookup and a signature check against the :class:`Gate`'s copy of the
accounts), and runs inside a cancel scope the gate cancels when its credential is revoked.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from urllib.parse import quote

from markupsafe import Markup
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..events import encode_sse
from . import errors
from .auth import LOCAL_USER, SCOPE_KEY, User
from .gate import COOKIE, LOCAL, Credential, Gate
from .render import partial
from .streams import sse_response

GUEST = User(id=None, name="", admin=False)
"""Someone not signed in, on the pages anyone may see (the login page, /healthz)."""

# Paths anyone may ask for: the health check, the static files, signing in, and the pages
# of shared links (the link is the credential: see ``sharing``).
PUBLIC_PATHS = ("/healthz", "/login", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/", "/shared/")

SIGNED_OUT = "You are signed out: reload the page to sign in again."
NO_ACCOUNTS = (
    "This server has no accounts yet and is not on a loopback address, so it answers nothing: "
    "create the first user with `psyche-sse user add NAME`."
)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def login_url(next_url: str) -> str:
    return "/login" if next_url in ("", "/") else f"/login?next={quote(next_url, safe='/')}"


def _bearer(headers: Headers) -> str | None:
    """The token of ``Authorization: Bearer <token>``; "" for any other Authorization."""
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _cookie(headers: Headers) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed header from someone else's cookie: not ours to judge
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


async def _signed_out_stream() -> AsyncIterator[bytes]:
    notice = partial("#status", "innerHTML", Markup("<span>{}</span>").format(SIGNED_OUT))
    yield encode_sse(str(notice))
    yield encode_sse("", event="end")


class Authentication:
    """Sets ``scope["psyche.user"]`` from the login cookie or ``Authorization: Bearer``, and
    answers requests that need a user and have none: 401 JSON (with ``WWW-Authenticate``)
    for the API, an event stream saying so for a page's stream, and a redirect to the login
    page for pages."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        public = is_public(scope["path"])
        mode = self.gate.mode
        if mode == "local":
            scope[SCOPE_KEY] = LOCAL_USER
            await self._run(LOCAL, scope, receive, send)
            return
        if mode == "closed" and not public:
            await errors.json_error(503, NO_ACCOUNTS, code="no_accounts")(scope, receive, send)
            return
        headers = Headers(scope=scope)
        found: tuple[User, Credential] | None = None
        bearer = _bearer(headers)
        if bearer is not None:
            found = await self.gate.from_token(bearer) if bearer else None
            if found is None and not public:
                await self._unauthorized("the token is not valid (revoked, or mistyped)")(
                    scope, receive, send
                )
                return
        else:
            cookie = _cookie(headers)
            found = self.gate.from_cookie(cookie) if cookie else None
        if found is None:
            if not public:
                await self._refusal(scope, headers)(scope, receive, send)
                return
            scope[SCOPE_KEY] = GUEST
            await self.app(scope, receive, send)
            return
        user, credential = found
        scope[SCOPE_KEY] = user
        await self._run(credential, scope, receive, send)

    async def _run(
        self, credential: Credential, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The request, ended if ``credential`` stops holding while it runs."""
        with self.gate.holding(credential) as held:
            await self.app(scope, receive, send)
        if held.cancelled_caught:
            await self._end(scope, receive, send)

    async def _end(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The credential was revoked mid-request: end the response (an event stream, most
        likely) cleanly; if none had started, answer 401."""
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except RuntimeError:
            # The response had not started (or had ended): the server refuses the body.
            with contextlib.suppress(RuntimeError):
                await self._unauthorized("the credential was revoked")(scope, receive, send)
        except OSError:
            pass  # the client is gone

    def _refusal(self, scope: Scope, headers: Headers) -> Response:
        path: str = scope["path"]
        accept = headers.get("accept", "")
        if path.startswith("/api/") or path == "/metrics" or "application/json" in accept:
            return self._unauthorized("sign in: send Authorization: Bearer <token>")
        if "text/event-stream" in accept:
            # A page's stream: say so in the page, then ``end``, so htmx does not reconnect.
            return sse_response(_signed_out_stream())
        if headers.get("hx-request") == "true":
            return errors.htmx_error(401, SIGNED_OUT)
        if scope["method"] in ("GET", "HEAD"):
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            return RedirectResponse(login_url(target), status_code=303)
        return RedirectResponse("/login", status_code=303)

    @staticmethod
    def _unauthorized(message: str) -> JSONResponse:
        response = errors.json_error(401, message, code="unauthorized")
        response.headers["WWW-Authenticate"] = 'Bearer realm="psyche-sse"'
        return response
