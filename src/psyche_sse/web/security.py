"""What every request and response passes: the Host check, the origin check on writes,
and the security headers.

Pure ASGI middleware, so event streams pass through untouched. Their refusals are JSON
errors (:func:`errors.json_error`) and, like every other response, carry the headers.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import errors

# Defence in depth behind the escaping: no inline or foreign script can run in the page.
# A turn's progress bar is an inline style attribute (its width), hence 'unsafe-inline'
# for styles; the colours live in psyche.css.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)

_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_DEFAULT_PORTS = MappingProxyType({"http": 80, "https": 443})


SERVER_SEND = "psyche.server_send"
"""The scope key of the server's own ``send``, as :class:`SecurityHeaders` got it."""


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response.

    It must wrap the whole app, Starlette's ``ServerErrorMiddleware`` included, or the
    500 that one sends goes out without them (see :class:`~psyche_sse.web.app.App`).
    Outermost, it leaves the server's ``send`` in the scope (:data:`SERVER_SEND`), for an
    event stream's body (:class:`~psyche_sse.web.streams.EventStream`).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        scope[SERVER_SEND] = send
        await self.app(scope, receive, send_with_headers)


def _header(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope["headers"] if key == name]


def _host_and_port(authority: str, scheme: str) -> tuple[str, int] | None:
    """``example.com:8000`` -> ``("example.com", 8000)``; None when it is not a host."""
    try:
        parts = urlsplit(f"//{authority}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.path or parts.query:
        return None
    return host.rstrip("."), port or _DEFAULT_PORTS.get(scheme, 0)


def normalise_host(name: str) -> str:
    """A host name or pattern as :class:`AllowedHosts` compares them: lower case, IPv6
    without brackets, no trailing dot."""
    return name.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")


class AllowedHosts:
    """Answers only requests whose ``Host`` names this service: others get a 400.

    A page on another domain that resolves its name to 127.0.0.1 (DNS rebinding) is
    same-origin with itself, so the browser lets it read what this server answers; the
    Host header is what gives it away. ``*`` allows any host, ``*.example.com`` any
    subdomain of example.com.
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        names = {normalise_host(h) for h in hosts}
        self.any = "*" in names
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))
        self.names = frozenset(n for n in names if not n.startswith("*"))

    def allows(self, host: str) -> bool:
        return self.any or host in self.names or host.endswith(self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.any:
            hosts = _header(scope, b"host")
            parsed = _host_and_port(hosts[0], scope.get("scheme", "http")) if hosts else None
            if len(hosts) != 1 or parsed is None or not self.allows(parsed[0]):
                response = errors.json_error(
                    400, "this server does not answer for that host name", code="bad_host"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SameOriginWrites:
    """Refuses a browser's cross-site write (a page elsewhere starting or stopping rounds,
    renaming or deleting sessions).

    Browsers say where a request comes from: ``Sec-Fetch-Site`` (when they send it) and
    ``Origin`` (scheme, host and port of the page). Either saying "elsewhere" is enough to
    refuse. ``Sec-Fetch-Site: same-site`` is refused too: it covers any other port of the
    same host, and every other app on ``localhost`` is same-site with this one. Scripts
    and curl send neither header, so they are not affected.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writes = scope["type"] == "http" and scope["method"] not in _SAFE_METHODS
        if writes and not self.same_origin(scope):
            response = errors.json_error(403, "cross-site requests are not accepted")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def same_origin(scope: Scope) -> bool:
        if any(
            v.strip().lower() not in ("same-origin", "none")
            for v in _header(scope, b"sec-fetch-site")
        ):
            return False
        origins = _header(scope, b"origin")
        if not origins:
            return True
        scheme = scope.get("scheme", "http")
        hosts = _header(scope, b"host")
        here = _host_and_port(hosts[0], scheme) if hosts else None
        for origin in origins:
            parts = urlsplit(origin.strip())
            there = _host_and_port(parts.netloc, parts.scheme.lower()) if parts.netloc else None
            if here is None or parts.scheme.lower() != scheme or there != here:
                return False
        return True
