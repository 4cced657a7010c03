"""One turn's completion through LiteLLM: native or simulated streaming, retries, timeouts.

Use it as ``async with client.stream(request) as reply: async for text in reply: ...``.
The iteration yields the answer text as it arrives (reasoning split out); afterwards ``reply``
holds the whole text, the reasoning, the streaming mode used, usage and timings. Leaving the
``async with`` block, normally or by cancellation, closes the provider stream and its HTTP
connection at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType, TracebackType
from typing import Any, Literal, Protocol

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from ..config import Settings, StreamingMode
from . import _litellm
from .cost import counted, estimate_usage
from .errors import LLMError, ModelUnavailable, StreamBroken
from .names import is_offline
from .ratelimit import ModelRateLimiter
from .reasoning import ReasoningSplitter
from .simulate import chunk_text

log = logging.getLogger(__name__)

Streaming = Literal["native", "simulated"]


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str
    messages: list[dict[str, str]]
    temperature: float
    max_tokens: int  # the settings' ``max_tokens``, which holds its default
    seed: int | None = None


@dataclass(slots=True)
class Reply:
    """What a turn produced; filled in while it streams."""

    model: str
    text: str = ""
    reasoning: str = ""
    streaming: Streaming | None = None
    usage: dict[str, int] | None = None
    attempts: int = 0
    first_token_ms: int | None = None
    duration_ms: int = 0
    started: float = field(default_factory=time.perf_counter)

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)


_FATAL = ("AuthenticationError", "PermissionDeniedError", "NotFoundError")
# LiteLLM reports a 401 from an OpenAI-compatible server as BadRequestError and a 403 as
# APIError; the status says what happened.
_BY_STATUS = MappingProxyType(
    {401: "AuthenticationError", 403: "PermissionDeniedError", 404: "NotFoundError"}
)
_TRANSIENT = (
    "RateLimitError",
    "Timeout",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
)


def classify(exc: BaseException) -> LLMError:
    """Map any provider failure to an :class:`LLMError` whose message is safe to show."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, TimeoutError):
        return LLMError("the provider timed out", error_class="Timeout", retryable=True)
    status = getattr(exc, "status_code", None)
    name = (_BY_STATUS.get(status) if isinstance(status, int) else None) or type(exc).__name__
    if name in _FATAL:
        return ModelUnavailable(f"the provider refused the request ({name})", error_class=name)
    transient = name in _TRANSIENT or (
        isinstance(status, int) and (status >= 500 or status in (408, 409, 429))
    )
    detail = "rate limited" if status == 429 or name == "RateLimitError" else "failed"
    return LLMError(f"the provider {detail} ({name})", error_class=name, retryable=transient)


def _cut_off() -> LLMError:
    """A stream the provider ended without saying the reply was finished."""
    return LLMError(
        "the provider ended the stream before the reply was finished",
        error_class="IncompleteStream",
        retryable=True,
    )


def _content(chunk: Any) -> tuple[str, str]:
    """(answer text, reasoning text) of one LiteLLM stream chunk."""
    choices = getattr(chunk, "choices", None) or []
    if not choices:
        return "", ""
    delta = getattr(choices[0], "delta", None)
    if delta is None:
        return "", ""
    return (getattr(delta, "content", None) or "", getattr(delta, "reasoning_content", None) or "")


def _usage(obj: Any) -> dict[str, int] | None:
    usage = getattr(obj, "usage", None)
    if not usage:
        return None
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    values = {k: getattr(usage, k, None) for k in keys}
    return {k: int(v) for k, v in values.items() if isinstance(v, int)} or None


class Observer(Protocol):
    """Told what no event says: the retries and the waits for the rate limit."""

    def retried(self, model: str, error_class: str) -> None: ...

    def rate_limited(self, model: str, seconds: float) -> None: ...


class LLMClient:
    """Completions for the council. Holds what it learns across turns (which models cannot
    stream, which LiteLLM was told about) and the per-model rate limits. Its
    :attr:`observer` (the engine's metrics) is told of retries and rate-limit waits."""

    def __init__(self, settings: Settings, observer: Observer | None = None) -> None:
        self.settings = settings
        self.rate_limiter = ModelRateLimiter(settings.rate_limit_rpm)
        self.observer = observer
        self._cannot_stream: set[str] = set()
        self._described: set[str] = set()

    async def acquire(self, model: str) -> None:
        """Wait for the model's rate limit, telling the observer when it had to."""
        waited = await self.rate_limiter.acquire(model)
        if waited is not None and self.observer is not None:
            self.observer.rate_limited(model, waited)

    def stream(self, request: CompletionRequest, mode: StreamingMode | None = None) -> ReplyStream:
        return ReplyStream(self, request, mode or self.settings.streaming)

    def _kwargs(
        self, lm: ModuleType, request: CompletionRequest, *, stream: bool
    ) -> dict[str, Any]:
        if request.model not in self._described:
            _litellm.describe_model(lm, request.model)
            self._described.add(request.model)
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stream": stream,
            # Retries are ours (counted, and only before the first chunk).
            "max_retries": 0,
            "num_retries": 0,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if stream:
            kwargs["stream_options"] = {"include_usage": True}
        if self.settings.api_base and not is_offline(request.model):
            kwargs["api_base"] = self.settings.api_base
        if is_offline(request.model):
            kwargs["extra_body"] = {
                "tps": self.settings.offline_tps,
                "tick": self.settings.offline_tick,
            }
        return kwargs

    async def close(self) -> None:
        await _litellm.aclose()


class ReplyStream:
    def __init__(self, client: LLMClient, request: CompletionRequest, mode: StreamingMode):
        self._client = client
        self._settings = client.settings
        self._request = request
        self._mode = mode
        self.reply = Reply(model=request.model)
        self._gen: AsyncGenerator[str, None] | None = None

    async def __aenter__(self) -> ReplyStream:
        self._gen = self._run()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._gen is not None:
            with anyio.CancelScope(shield=True):
                await self._gen.aclose()
        self.reply.duration_ms = self.reply.elapsed_ms()

    def __aiter__(self) -> AsyncIterator[str]:
        assert self._gen is not None, "use 'async with client.stream(...)'"
        return self._gen

    # --- the turn ---------------------------------------------------------------------

    def _deadline_wait(self, limit: float) -> float:
        remaining = self._settings.timeout_total - (time.perf_counter() - self.reply.started)
        if remaining <= 0:
            raise LLMError("the turn ran out of time", error_class="Timeout")
        return min(limit, remaining)

    async def _run(self) -> AsyncGenerator[str, None]:
        splitter = ReasoningSplitter()
        stream, first = await self._open()
        try:
            pending = list(first)
            while True:
                if pending:
                    raw, thought = pending.pop(0)
                else:
                    try:
                        chunk = await self._next(stream)
                    except StopAsyncIteration:
                        break
                    if chunk is None:
                        continue
                    raw, thought = chunk
                answer, _ = splitter.feed(raw)
                self.reply.reasoning += thought
                if answer:
                    self.reply.text += answer
                    yield answer
            answer, _ = splitter.flush()
            if answer:
                self.reply.text += answer
                yield answer
            self.reply.reasoning += splitter.reasoning
        finally:
            if stream is not None:
                with anyio.CancelScope(shield=True):
                    await _aclose(stream)

    async def _next(self, stream: Any) -> tuple[str, str] | None:
        """The next chunk's content, None for a chunk without any; StopAsyncIteration at end."""
        if isinstance(stream, _Simulated):
            return await stream.next()
        idle = self._settings.timeout_idle
        wait = self._deadline_wait(idle)
        try:
            with anyio.fail_after(wait):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            if not _litellm.provider_finished(stream):
                cut = _cut_off()
                raise StreamBroken(
                    cut.message, error_class=cut.error_class, partial=self.reply.text
                ) from None
            raise
        except Exception as exc:
            err = classify(exc)
            if isinstance(exc, TimeoutError):
                why = "the stream stalled" if wait >= idle else "the turn ran out of time"
                err = LLMError(why, error_class="Timeout")
            raise StreamBroken(
                err.message, error_class=err.error_class, partial=self.reply.text
            ) from exc
        self.reply.usage = _usage(chunk) or self.reply.usage
        text, thought = _content(chunk)
        return (text, thought) if (text or thought) else None

    async def _open(self) -> tuple[Any, list[tuple[str, str]]]:
        """Open the stream and read up to its first content, retrying before that point."""
        settings = self._settings

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            error_class = str(getattr(exc, "error_class", None) or type(exc).__name__)
            log.warning(
                "%s: attempt %d failed (%s); retrying",
                self._request.model,
                state.attempt_number,
                error_class,
            )
            if self._client.observer is not None:
                self._client.observer.retried(self._request.model, error_class)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.retry_attempts),
            wait=wait_random_exponential(multiplier=settings.retry_base, max=settings.retry_cap),
            retry=retry_if_exception(lambda e: isinstance(e, LLMError) and e.retryable),
            before_sleep=log_retry,
            sleep=anyio.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.reply.attempts = attempt.retry_state.attempt_number
                return await self._attempt()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self) -> tuple[Any, list[tuple[str, str]]]:
        model = self._request.model
        if self._mode == "simulated" or (
            self._mode == "auto" and model in self._client._cannot_stream
        ):
            return await self._simulated()
        try:
            return await self._native()
        except LLMError as exc:
            if self._mode == "native" or isinstance(exc, ModelUnavailable):
                raise
            if exc.error_class == "RateLimitError":
                raise
            log.info(
                "%s: native streaming failed before the first token (%s); "
                "falling back to simulated streaming",
                model,
                exc.error_class,
            )
            result = await self._simulated()
            if not exc.retryable:
                # A refusal to stream, not a glitch: don't ask this model to stream again.
                self._client._cannot_stream.add(model)
            return result

    async def _native(self) -> tuple[Any, list[tuple[str, str]]]:
        lm = await _litellm.load()
        await self._client.acquire(self._request.model)
        stream: Any = None
        try:
            with anyio.fail_after(self._deadline_wait(self._settings.timeout_first_token)):
                stream = await lm.acompletion(
                    **self._client._kwargs(lm, self._request, stream=True)
                )
                if stream is None:  # LiteLLM swallows some error statuses (422) this way
                    raise LLMError("the provider sent no reply", error_class="EmptyResponse")
                first: list[tuple[str, str]] = []
                async for chunk in stream:
                    self.reply.usage = _usage(chunk) or self.reply.usage
                    text, thought = _content(chunk)
                    if text or thought:
                        first.append((text, thought))
                        break
                else:
                    if not _litellm.provider_finished(stream):
                        raise _cut_off()
        except BaseException as exc:
            if stream is not None:
                with anyio.CancelScope(shield=True):
                    await _aclose(stream)
            if isinstance(exc, Exception):
                raise classify(exc) from exc
            raise
        self.reply.streaming = "native"
        self.reply.first_token_ms = self.reply.elapsed_ms()
        return stream, first

    async def _simulated(self) -> tuple[Any, list[tuple[str, str]]]:
        lm = await _litellm.load()
        await self._client.acquire(self._request.model)
        try:
            with anyio.fail_after(self._deadline_wait(self._settings.timeout_first_token)):
                response = await lm.acompletion(
                    **self._client._kwargs(lm, self._request, stream=False)
                )
        except Exception as exc:
            raise classify(exc) from exc
        choices = getattr(response, "choices", None)
        if not choices:  # LiteLLM swallows some error statuses (422) this way
            raise LLMError("the provider sent no reply", error_class="EmptyResponse")
        message = choices[0].message
        text = getattr(message, "content", None) or ""
        self.reply.reasoning += getattr(message, "reasoning_content", None) or ""
        self.reply.usage = _usage(response)
        if text and not counted(self.reply.usage):
            # LiteLLM counts a stream's tokens itself when the provider sends none; so here.
            req = self._request
            self.reply.usage = await estimate_usage(lm, req.model, req.messages, text)
        self.reply.streaming = "simulated"
        self.reply.first_token_ms = self.reply.elapsed_ms()
        chunks = chunk_text(text, self._settings.simulated_chunks)
        stream = _Simulated(chunks[1:], self._settings.simulated_delay)
        return stream, [(chunks[0], "")] if chunks else []


class _Simulated:
    """Paced replay of a whole reply's chunks."""

    def __init__(self, chunks: list[str], delay: float) -> None:
        self._chunks = chunks
        self._delay = delay

    async def next(self) -> tuple[str, str]:
        if not self._chunks:
            raise StopAsyncIteration
        if self._delay:
            await anyio.sleep(self._delay)
        return self._chunks.pop(0), ""

    async def aclose(self) -> None:
        self._chunks.clear()


async def _aclose(stream: Any) -> None:
    close = getattr(stream, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception:  # closing must never mask the turn's own outcome
        log.debug("closing the provider stream failed", exc_info=True)
