"""The application factory: routes, templates, static files, errors, and the engine's life.

``create_app(settings)`` owns an :class:`Engine` for the app's lifetime (rounds run in its
task group, so they outlive the requests that started them); pass ``engine`` to share one
you run yourself; ``log_ids``: where its rounds and turns bind their ids for the log
lines. The app's event streams share its :class:`StreamHub` (``app.streams``), which the
server running the app shuts down when it stops.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ..config import Settings
from ..engine import Engine
from ..logs import LogIds
from ..store import Store
from . import errors
from .access import Authentication
from .api import Api
from .context import Context
from .gate import Gate
from .login import LoginPages
from .pages import Pages
from .render import Renderer
from .security import AllowedHosts, SameOriginWrites, SecurityHeaders
from .sessions import SessionPages
from .sharing import SharePages
from .status import StatusPages
from .streams import StreamHub

log = logging.getLogger(__name__)


class App(Starlette):
    """Starlette, with :class:`SecurityHeaders` outside its ``ServerErrorMiddleware``:
    user middleware sits inside that one, so a 500 would otherwise go out without them;
    and with the :class:`StreamHub` its event streams share."""

    def __init__(self, *, streams: StreamHub, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.streams = streams

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


@asynccontextmanager
async def _watching(gate: Gate, store: Store) -> AsyncIterator[None]:
    """The gate open on ``store``, noticing changes to the accounts while inside: it stops
    looking before the store closes."""
    await gate.start(store)
    async with anyio.create_task_group() as tg:
        tg.start_soon(gate.watch)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


def _preload() -> None:
    from ..llm import preload

    try:
        preload()
    except Exception:
        # The first turn will import it instead (and report a real failure in its card).
        log.warning("could not warm up LiteLLM at start-up", exc_info=True)


def create_app(
    settings: Settings, engine: Engine | None = None, *, log_ids: LogIds | None = None
) -> App:
    renderer = Renderer(settings)
    streams = StreamHub()
    ctx = Context(settings, renderer, streams, engine)
    gate = Gate(settings)
    sharing = SharePages(ctx)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            # LiteLLM takes seconds to import: in a thread, while the app already serves. A
            # turn that starts before it is done waits for it (see ``llm._litellm.load``).
            tg.start_soon(partial(anyio.to_thread.run_sync, _preload, abandon_on_cancel=True))
            tg.start_soon(sharing.run)
            try:
                if engine is not None:
                    async with _watching(gate, engine.store):
                        yield
                    return
                async with Engine(settings, log_ids=log_ids) as owned:
                    with ctx.running(owned):
                        async with _watching(gate, owned.store):
                            yield
            finally:
                tg.cancel_scope.cancel()

    static = StaticFiles(packages=[("psyche_sse", "static")])
    routes = [
        *LoginPages(ctx, gate).routes(),
        *Api(ctx).routes(),
        *Pages(ctx).routes(),
        *SessionPages(ctx).routes(),
        *sharing.routes(),
        *StatusPages(ctx).routes(),
        Mount("/static", app=static, name="static"),
    ]
    app = App(
        streams=streams,
        routes=routes,
        middleware=[
            Middleware(AllowedHosts, hosts=settings.allowed_host_names()),
            Middleware(SameOriginWrites),
            Middleware(Authentication, gate=gate),
        ],
        exception_handlers=errors.handlers(renderer),
        lifespan=lifespan,
    )
    app.state.context = ctx
    app.state.gate = gate
    app.state.sharing = sharing
    return app
