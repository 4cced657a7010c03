"""``psyche-sse serve``: the app under uvicorn, with limits for slow and idle clients."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, ClassVar

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import Settings
from ..logs import LogIds, use_format, uvicorn_config
from .app import create_app
from .streams import StreamHub

# Open event streams are ended at shutdown; this bounds the wait for other requests.
GRACEFUL_SHUTDOWN_SECONDS = 5


class Server(uvicorn.Server):
    """uvicorn's server, which first ends the app's open event streams when it stops (they
    would otherwise hold the shutdown for the whole graceful period)."""

    def __init__(self, config: uvicorn.Config, streams: StreamHub) -> None:
        super().__init__(config)
        self.streams = streams

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.streams.shutdown()
        await super().shutdown(sockets)


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools), with a deadline for a request's headers.

    uvicorn times a connection only between requests (``timeout_keep_alive``, armed when a
    response ends), and any byte received disarms that timer. So a client that connects and
    sends nothing, or sends its headers a byte at a time, or never ends them, would hold its
    connection, and a place under ``limit_concurrency``, for ever. Here each request's
    headers must be complete within :attr:`header_timeout` seconds of the connection
    opening or of the previous response ending, or the connection is closed.
    """

    header_timeout: ClassVar[float]  # set by :func:`http_protocol`, from the settings
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def on_headers_complete(self) -> None:
        self._cancel_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # A request already waiting in the pipeline has its headers; otherwise the next
        # request's headers are due.
        waiting = bool(self.pipeline)
        super().on_response_complete()
        if not waiting and not self.transport.is_closing():
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def http_protocol(header_timeout: float) -> type[HeaderDeadline]:
    """The protocol class uvicorn builds each connection with, with this deadline."""
    return type("HttpProtocol", (HeaderDeadline,), {"header_timeout": header_timeout})


def server(
    settings: Settings,
    *,
    log_config: dict[str, Any] | None = LOGGING_CONFIG,
    log_ids: LogIds | None = None,
    fd: int | None = None,
) -> Server:
    """The app of ``settings`` under uvicorn, ready to :meth:`~Server.run`. ``log_config``:
    uvicorn's logging set-up, in ``settings.log_format`` (``None`` leaves the process's
    logging as it is); ``log_ids``: the ids the log handlers read (see :mod:`..logs`)."""
    log_ids = log_ids or LogIds()
    app = create_app(settings, log_ids=log_ids)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        fd=fd,  # a socket bound by ``serve --workers`` (see :mod:`.workers`)
        http=http_protocol(settings.header_timeout),
        lifespan="on",
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_timeout,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        # X-Forwarded-For and -Proto count only from a trusted proxy (uvicorn's own default
        # would trust any loopback peer, FORWARDED_ALLOW_IPS aside).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
        log_level="info",
        access_log=settings.access_log,
        log_config=uvicorn_config(settings.log_format, log_ids, log_config),
    )
    return Server(config, app.streams)


def serve(settings: Settings, *, fd: int | None = None) -> None:
    log_ids = LogIds()
    use_format(settings.log_format, log_ids)  # the process's own handlers (the CLI's)
    server(settings, log_ids=log_ids, fd=fd).run()
