"""The app in this process, for what ends: JSON calls, pages, and ``POST /api/rounds``,
whose stream ends with its run.

The app's lifespan (the engine its rounds run in) runs on an event loop in a thread of its
own; a plain ``httpx.Client`` sends each request there through httpx's ASGI transport, which
answers once the response has ended. So a stream that never ends (a session's events) needs
a real server (``tests/live.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.types import ASGIApp

from psyche_sse.config import Settings
from psyche_sse.llm import preload
from psyche_sse.web import create_app


def settings(db_dir: Path, **overrides: Any) -> Settings:
    """The service's settings on a database in ``db_dir``: the offline model at full speed
    unless ``overrides`` say otherwise."""
    return Settings(**{"db": db_dir / "psyche.db", "offline_tps": 0, **overrides})


BASE_URL = "http://127.0.0.1"


class InProcess:
    """An app running in this process, with the :class:`~tests.live.LiveServer` interface
    the tests use: ``with app.client() as client``, and ``url``."""

    url = BASE_URL

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    @contextmanager
    def client(self) -> Iterator[httpx.Client]:
        yield self._client


class PortalTransport(httpx.BaseTransport):
    """Each request to ``app`` on the portal's loop, through httpx's ASGI transport."""

    def __init__(self, portal: BlockingPortal, app: ASGIApp) -> None:
        self._portal = portal
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> httpx.Response:
            sent = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            response = await self._asgi.handle_async_request(sent)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return self._portal.call(send)


@contextmanager
def running(config: Settings) -> Iterator[InProcess]:
    """The app of ``config``, its lifespan entered for the ``with`` block."""
    # The app imports LiteLLM in a thread of its own, which a short test would leave
    # importing into the next one, under that test's warning filters: import it here.
    preload()
    app = create_app(config)
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
        httpx.Client(
            transport=PortalTransport(portal, app), base_url=BASE_URL, timeout=15.0
        ) as client,
    ):
        yield InProcess(client)
