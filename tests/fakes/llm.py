"""An LLM client in the test process that answers from queued replies: for tests of the
council and the engine, which need to know exactly what each agent says, and no provider.

It stands where :class:`psyche_sse.llm.LLMClient` does (``Engine(settings, llm=...)``):
``stream(request)`` gives an async context manager that yields the reply's words as
deltas and fills in ``reply`` as a real one does. A queued :class:`Cut` streams its words,
then fails as a provider's stream cut mid-way does.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType

import anyio

from psyche_sse.errors import LLMError, StreamBroken
from psyche_sse.llm import CompletionRequest, Reply
from psyche_sse.prompts import PROMPT_AGENT_MARK


@dataclass(frozen=True)
class Cut:
    """A reply whose stream breaks after ``text``."""

    text: str
    error_class: str = "APIConnectionError"


Queued = str | Cut | LLMError


@dataclass
class QueuedLLM:
    """Replies by agent, in order; ``prompts`` keeps every request's messages by agent."""

    queues: dict[str, deque[Queued]] = field(default_factory=lambda: defaultdict(deque))
    prompts: dict[str, list[list[dict[str, str]]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def answer(self, agent_id: str, *replies: Queued) -> QueuedLLM:
        self.queues[agent_id].extend(replies)
        return self

    def stream(self, request: CompletionRequest, mode: object = None) -> QueuedStream:
        agent = _agent_of(request)
        self.prompts[agent].append(request.messages)
        queue = self.queues[agent]
        if not queue:
            raise AssertionError(f"no reply queued for {agent}")
        return QueuedStream(request.model, queue.popleft())

    async def close(self) -> None:
        return None


def _agent_of(request: CompletionRequest) -> str:
    system = request.messages[0]["content"]
    assert system.startswith(PROMPT_AGENT_MARK + " "), system
    return system[len(PROMPT_AGENT_MARK) + 1 :].split(",", 1)[0]


class QueuedStream:
    def __init__(self, model: str, queued: Queued) -> None:
        self.reply = Reply(model=model, streaming="native", attempts=1)
        self._queued = queued

    async def __aenter__(self) -> QueuedStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.reply.duration_ms = self.reply.elapsed_ms()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._deltas()

    async def _deltas(self) -> AsyncIterator[str]:
        queued = self._queued
        if isinstance(queued, LLMError):
            raise queued
        text = queued.text if isinstance(queued, Cut) else queued
        words = text.split(" ")
        for i, word in enumerate(words):
            delta = word if i == len(words) - 1 else word + " "
            if self.reply.first_token_ms is None:
                self.reply.first_token_ms = self.reply.elapsed_ms()
            self.reply.text += delta
            await anyio.lowlevel.checkpoint()
            yield delta
        if isinstance(queued, Cut):
            raise StreamBroken(
                "the provider's stream broke off", error_class=queued.error_class, partial=text
            )
        self.reply.usage = {"completion_tokens": len(words)}
