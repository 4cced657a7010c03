"""Operations, for admins only: ``/metrics`` (Prometheus), the status page and its stream.

The status page is the server-rendered fragment of a ``system_status`` event, swapped in by
htmx from ``/status/stream`` every ``status_interval`` seconds, as the conversation page's
stream is. ``/api/status`` is the same as JSON, and ``/api/status/events`` the same events
as named SSE messages with JSON data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from ..engine import Engine
from ..events import SystemStatus, encode_sse
from ..metrics import CONTENT_TYPE_LATEST
from .auth import account_of, require_admin
from .context import Context
from .render import partial
from .streams import HEARTBEAT, RETRY_MS, sse_response


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``, ``3 d 4 h``: an uptime as people read it."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def size(count: int | None) -> str:
    """Bytes as people read them: ``512 B``, ``3.4 MB``; an em dash for none."""
    if count is None:
        return "—"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover


class StatusPages:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.renderer = ctx.renderer
        self.renderer.env.filters.setdefault("duration", duration)
        self.renderer.env.filters.setdefault("size", size)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/status", self.page, methods=["GET"]),
            Route("/status/stream", self.stream, methods=["GET"]),
            Route("/api/status", self.snapshot, methods=["GET"]),
            Route("/api/status/events", self.events, methods=["GET"]),
        ]

    def fragment(self, status: SystemStatus) -> Markup:
        return self.renderer.template("_system_status.html", s=status)

    async def metrics(self, request: Request) -> Response:
        require_admin(request)
        body = self.ctx.engine.metrics.exposition()
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def page(self, request: Request) -> Response:
        require_admin(request)
        status = self.ctx.engine.status()
        html = self.renderer.env.get_template("status.html").render(
            fragment=self.fragment(status),
            interval=self.ctx.settings.status_interval,
            account=account_of(request),
            admin=True,
        )
        return HTMLResponse(html)

    async def snapshot(self, request: Request) -> Response:
        require_admin(request)
        return Response(
            self.ctx.engine.status().json(), media_type="application/json; charset=utf-8"
        )

    async def stream(self, request: Request) -> Response:
        """The page's fragment, anew every ``status_interval`` seconds."""
        require_admin(request)

        def encode(status: SystemStatus) -> bytes:
            return encode_sse(str(partial("#system-status", "innerHTML", self.fragment(status))))

        return sse_response(self._every(self.ctx.engine, encode))

    async def events(self, request: Request) -> Response:
        """``system_status`` events with JSON data, every ``status_interval`` seconds."""
        require_admin(request)

        def encode(status: SystemStatus) -> bytes:
            return encode_sse(status.json(), event=status.type.value)

        return sse_response(self._every(self.ctx.engine, encode))

    async def _every(
        self, engine: Engine, encode: Callable[[SystemStatus], bytes]
    ) -> AsyncIterator[bytes]:
        """The engine's status, encoded, now and every ``status_interval`` seconds, until
        the server stops."""
        hub = self.ctx.streams
        settings = self.ctx.settings
        yield f"retry: {RETRY_MS}\n\n".encode()
        beat = anyio.current_time()
        with engine.metrics.viewer("status"):
            while not hub.stopping:
                yield encode(engine.status())
                await hub.pause(settings.status_interval)
                if anyio.current_time() - beat >= settings.heartbeat:
                    # A heartbeat is when the response looks whether its client is gone.
                    beat = anyio.current_time()
                    yield HEARTBEAT
