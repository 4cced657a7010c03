"""The application factory: routes, templates, static files, errors, and the engine's life.

``create_app(settings)`` owns an :class:`Engine` for the app's lifetime (rounds run in its
task group, so they outlive the requests that started them); pass ``engine`` to share one
you run yourself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..engine import Engine
from . import errors
from .api import Api
from .context import Context
from .pages import Pages
from .render import Renderer
from .sessions import SessionPages

log = logging.getLogger(__name__)

# Defence in depth behind the escaping: no inline or foreign script can run in the page.
# Inline style attributes carry the archetype colours, hence 'unsafe-inline' for styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response (pure ASGI: streams pass through)."""

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

        await self.app(scope, receive, send_with_headers)


class SameOriginWrites:
    """Refuses a browser's cross-site POST (a page elsewhere starting or stopping rounds).

    Browsers name the page a request comes from in ``Origin``; scripts and curl send none,
    so they are not affected.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(scope["headers"])
            origin = headers.get(b"origin", b"").decode("latin-1")
            host = headers.get(b"host", b"").decode("latin-1")
            if origin and origin.split("://", 1)[-1] != host:
                response = errors.json_error(403, "cross-site requests are not accepted")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _preload() -> None:
    from ..llm import preload

    try:
        preload()
    except Exception:
        # The first turn will import it instead (and report a real failure in its card).
        log.warning("could not warm up LiteLLM at start-up", exc_info=True)


def create_app(settings: Settings, engine: Engine | None = None) -> Starlette:
    renderer = Renderer(settings)
    ctx = Context(settings, renderer, engine)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            # LiteLLM takes seconds to import: in a thread, while the app already serves. A
            # turn that starts before it is done waits for it (see ``llm._litellm.load``).
            tg.start_soon(partial(anyio.to_thread.run_sync, _preload, abandon_on_cancel=True))
            try:
                if engine is not None:
                    yield
                    return
                async with Engine(settings) as owned:
                    ctx._engine = owned
                    try:
                        yield
                    finally:
                        ctx._engine = None
            finally:
                tg.cancel_scope.cancel()

    static = StaticFiles(packages=[("psyche_sse", "static")])
    routes = [
        *Api(ctx).routes(),
        *Pages(ctx).routes(),
        *SessionPages(ctx).routes(),
        Mount("/static", app=static, name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers=errors.handlers(renderer),
        lifespan=lifespan,
    )
    app.add_middleware(SameOriginWrites)
    app.add_middleware(SecurityHeaders)
    app.state.context = ctx
    return app
