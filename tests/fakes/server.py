"""A fake LLM provider: a real HTTP server on 127.0.0.1, in a thread, with fault injection.

It speaks OpenAI's chat completions (``POST /v1/chat/completions``) and Ollama's API
(``/api/chat``, ``/api/generate``, ``/api/show``, ``/api/tags``) on the same port. A test
says how the next requests should go with :meth:`FakeProvider.behave`, then reads what the
server saw in :attr:`FakeProvider.requests`, each with whether the client went away
mid-stream. Waiting for something the server sees is :meth:`FakeProvider.until` (or
:meth:`FakeProvider.wait_for`): a condition with a time limit, never a sleep.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import anyio.to_thread
import uvicorn

from . import wire

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_REPLY = "The fake provider answers in plain words, one piece at a time, and then stops."
UNCOMPLETED = "ASGI callable returned without completing response."


@dataclass(frozen=True)
class Behaviour:
    """How the server answers chat requests until told otherwise."""

    reply: str = DEFAULT_REPLY
    # How the reply is cut into content chunks; None: word by word.
    pieces: tuple[str, ...] | None = None
    # Reasoning sent before the answer, the way each protocol carries it (streaming only).
    reasoning: tuple[str, ...] = ()
    # Statuses for the next requests, one each, before the server answers normally.
    fail: tuple[int, ...] = ()
    # A status for every request.
    fail_always: int | None = None
    # Answer 400 to every request with stream=true, like a provider that cannot stream.
    refuse_stream: bool = False
    # Seconds between the response headers and the first content chunk (inf: until the
    # client goes away), and between content chunks.
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0
    # Close the connection after this many content chunks, with no end of stream.
    cut_after: int | None = None
    # Clean cuts for the next streamed requests, one each: after this many content chunks the
    # HTTP response ends properly, but the protocol's end never comes (OpenAI: no
    # finish_reason, no usage, no [DONE]; Ollama: no object with "done": true).
    clean_cut: tuple[int, ...] = ()
    # After this many content chunks send nothing more until the client goes away.
    hold_after: int | None = None
    # Report no usage (OpenAI-compatible endpoint), as some compatible servers do not.
    no_usage: bool = False

    def content(self) -> list[str]:
        if self.pieces is not None:
            return list(self.pieces)
        words = self.reply.split(" ")
        return [w + " " for w in words[:-1]] + [words[-1]]


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int = 0
    chunks_sent: int = 0
    # The response was sent to its end.
    finished: bool = False
    # The client closed the connection before the response was finished.
    disconnected: bool = False
    # The handler is done with this request.
    over: bool = False

    @property
    def chat(self) -> bool:
        return self.path in wire.CHATS

    @property
    def stream(self) -> bool:
        endpoint = wire.CHATS.get(self.path)
        return bool(self.body.get("stream", endpoint is not None and endpoint.streams_by_default))


class _SilenceCutWarning(logging.Filter):
    """The server closes connections mid-response on purpose; uvicorn need not complain."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != UNCOMPLETED


class FakeProvider:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._requests: list[Recorded] = []
        self._fails_used = 0
        self._cuts_used = 0
        self.behaviour = Behaviour()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._filter = _SilenceCutWarning()
        self.port = 0

    # --- the test's side ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    def behave(self, **changes: Any) -> Behaviour:
        """Answer the next requests like this (fields of :class:`Behaviour`)."""
        with self._cond:
            self.behaviour = replace(Behaviour(), **changes)
            self._fails_used = self._cuts_used = 0
            return self.behaviour

    def reset(self) -> None:
        with self._cond:
            self.behaviour = Behaviour()
            self._fails_used = self._cuts_used = 0
            self._requests = []

    @property
    def requests(self) -> list[Recorded]:
        with self._cond:
            return list(self._requests)

    @property
    def chats(self) -> list[Recorded]:
        return [r for r in self.requests if r.chat]

    def wait_for(self, predicate: Callable[[list[Recorded]], bool], timeout: float) -> bool:
        """Block until ``predicate(requests)`` holds, or ``timeout`` seconds pass."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._requests), timeout)

    async def until(self, predicate: Callable[[list[Recorded]], bool], seconds: float) -> None:
        """:meth:`wait_for` for async tests; AssertionError when the time runs out."""
        met = await anyio.to_thread.run_sync(
            self.wait_for, predicate, seconds, abandon_on_cancel=True
        )
        assert met, f"the fake provider did not see that in {seconds} s: {self.requests}"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeProvider:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # clients queue here until uvicorn accepts: no start-up race
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            lifespan="off",
            log_config=None,
            access_log=False,
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        logging.getLogger("uvicorn.error").addFilter(self._filter)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-provider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        loop, closing = self._loop, self._closing
        if loop is not None and closing is not None and not loop.is_closed():
            loop.call_soon_threadsafe(closing.set)  # release held streams at once
        self._thread.join(10)
        logging.getLogger("uvicorn.error").removeFilter(self._filter)
        self._server = self._thread = None

    @contextmanager
    def running(self) -> Iterator[FakeProvider]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # --- the server's side ----------------------------------------------------------------

    def _update(self, record: Recorded, **changes: Any) -> None:
        with self._cond:
            for key, value in changes.items():
                setattr(record, key, value)
            self._cond.notify_all()

    def _plan(self, record: Recorded) -> tuple[Behaviour, int | None, int | None]:
        """The behaviour for this request, the failure status it gets, if any, and after how
        many content chunks its stream ends cleanly, if it does."""
        with self._cond:
            self._requests.append(record)
            self._cond.notify_all()
            b = self.behaviour
            if not record.chat:
                return b, None, None
            if b.fail_always is not None:
                return b, b.fail_always, None
            if self._fails_used < len(b.fail):
                self._fails_used += 1
                return b, b.fail[self._fails_used - 1], None
            if b.refuse_stream and record.stream:
                return b, 400, None
            if record.stream and self._cuts_used < len(b.clean_cut):
                self._cuts_used += 1
                return b, None, b.clean_cut[self._cuts_used - 1]
            return b, None, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._closing = asyncio.Event()
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw.decode("latin-1")}
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        record = Recorded(scope["method"], scope["path"], body, headers)
        behaviour, failure, clean_cut = self._plan(record)
        try:
            await self._answer(record, behaviour, failure, clean_cut, receive, send)
        finally:
            self._update(record, over=True)

    async def _answer(
        self,
        record: Recorded,
        b: Behaviour,
        failure: int | None,
        clean_cut: int | None,
        receive: Receive,
        send: Send,
    ) -> None:
        chat = wire.CHATS.get(record.path)
        if chat is not None and record.method == "POST":
            if failure is not None:
                refused = failure == 400 and record.stream
                why = "streaming is not supported by this model" if refused else "fake failure"
                await self._json(send, record, failure, chat.error(failure, why))
            elif record.stream:
                frames = chat.stream(record.body, b.content(), list(b.reasoning))
                if clean_cut is not None:
                    frames.content, frames.tail = frames.content[:clean_cut], []
                if b.no_usage:
                    frames.tail = [f for f in frames.tail if b'"usage"' not in f]
                await self._stream(record, b, frames, receive, send)
            else:
                whole = chat.whole(record.body, b.content())
                if b.no_usage:
                    whole.pop("usage", None)
                await self._json(send, record, 200, whole)
        elif record.path == "/api/show":
            await self._json(send, record, 200, wire.ollama_show(record.body))
        elif record.path == "/api/tags":
            await self._json(send, record, 200, wire.ollama_tags(["llama3:latest"]))
        else:
            await self._json(
                send, record, 404, {"error": f"no route {record.method} {record.path}"}
            )

    async def _json(self, send: Send, record: Recorded, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self._update(record, status=status)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
        self._update(record, finished=True)

    async def _stream(
        self, record: Recorded, b: Behaviour, frames: wire.Wire, receive: Receive, send: Send
    ) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            self._update(record, status=200)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", frames.content_type.encode()),
                        (b"cache-control", b"no-cache"),
                    ],
                }
            )
            for frame in frames.head:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            for index, frame in enumerate(frames.content):
                delay = b.first_token_delay if index == 0 else b.chunk_delay
                if index == b.hold_after:
                    delay = math.inf
                if delay and not await self._stay(gone, delay):
                    return
                if index == b.cut_after:
                    return  # uvicorn closes a response its app left unfinished
                if gone.is_set():
                    return
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                self._update(record, chunks_sent=index + 1)
            if b.cut_after is not None and b.cut_after >= len(frames.content):
                return
            for frame in frames.tail:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self._update(record, finished=True)
        finally:
            watcher.cancel()
            if gone.is_set() and not record.finished:
                self._update(record, disconnected=True)

    async def _stay(self, gone: asyncio.Event, seconds: float) -> bool:
        """Wait ``seconds``; False when the client left (or the server closes) meanwhile."""
        assert self._closing is not None
        waits = [asyncio.ensure_future(gone.wait()), asyncio.ensure_future(self._closing.wait())]
        try:
            await asyncio.wait(
                waits,
                timeout=None if math.isinf(seconds) else seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for w in waits:
                w.cancel()
        return not (gone.is_set() or self._closing.is_set())
