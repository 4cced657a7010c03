"""``psyche-sse serve``: the app under uvicorn."""

from __future__ import annotations

import socket

import uvicorn

from ..config import Settings
from . import streams
from .app import create_app

# Open event streams are ended at shutdown; this bounds the wait for other requests.
GRACEFUL_SHUTDOWN_SECONDS = 5


class Server(uvicorn.Server):
    """uvicorn's server, which first ends the open event streams when it stops (they would
    otherwise hold the shutdown for the whole graceful period)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        streams.shutdown()
        await super().shutdown(sockets)


def serve(settings: Settings) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_level="info",
        access_log=settings.access_log,
    )
    streams.reset()
    Server(config).run()
