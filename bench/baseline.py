"""The floor: a bare sse-starlette endpoint that yields pre-built events.

``GET /idle`` holds a client with no events.
``GET /stream`` replays the events in the JSON-lines file named by ``BENCH_EVENTS`` (each
line ``{"event": name, "data": text}``), already encoded, as fast as the client reads them.
Run with uvicorn: ``uvicorn bench.baseline:app``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


def _load() -> list[bytes]:
    path = os.environ.get("BENCH_EVENTS")
    if not path:
        return []
    with open(path) as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [
        ServerSentEvent(data=r["data"], event=r["event"], id=str(i), sep="\n").encode()
        for i, r in enumerate(rows, start=1)
    ]


EVENTS = _load()


async def stream(request: Request) -> EventSourceResponse:
    async def gen() -> AsyncIterator[bytes]:
        for event in EVENTS:
            yield event

    return EventSourceResponse(gen(), ping=15, sep="\n")


async def idle(request: Request) -> EventSourceResponse:
    """A stream that sends its first message, then nothing: the floor of an idle client."""

    async def gen() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        await anyio.sleep_forever()

    return EventSourceResponse(gen(), ping=15, sep="\n")


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/stream", stream), Route("/idle", idle), Route("/healthz", healthz)])
