"""``psyche-sse serve``: the app under uvicorn."""

from __future__ import annotations

import uvicorn

from ..config import Settings
from .app import create_app

# Open event streams are told to end at shutdown; this bounds the wait for the rest.
GRACEFUL_SHUTDOWN_SECONDS = 5


def serve(settings: Settings) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_level="info",
    )
    uvicorn.Server(config).run()
