"""The council: who hears whom, each agent's memory, and the round runner.

A round asks each archetype in turn. Every turn publishes ``agent_processing_started``, its
deltas, and exactly one ``agent_processing_complete``, whatever happens to the provider or
to the task running it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from . import events as ev
from .archetypes import ARCHETYPES, Archetype
from .config import Settings
from .events import Event, EventType, TurnStatus
from .llm import CompletionRequest, LLMClient, LLMError, StreamBroken
from .progress import LengthHistory, ProgressEstimate
from .prompts import build_messages
from .sentiment import Sentiment, analyse

log = logging.getLogger(__name__)

Publish = Callable[[EventType, dict[str, Any]], Awaitable[Event]]

NORMAL_PATHS: tuple[tuple[str, str], ...] = (
    ("Shadow", "Persona"),
    ("Self", "Ego"),
    ("Anima/Animus", "Ego"),
    ("Shadow", "Self"),
    ("Persona", "Ego"),
)
EMERGENCY_PATHS: tuple[tuple[str, str], ...] = (
    ("Shadow", "Anima/Animus"),
    ("Persona", "Self"),
    ("Shadow", "Ego"),
    ("Anima/Animus", "Persona"),
)


class InputError(ValueError):
    """Input a person gave that we cannot use; the message says why, in one line."""


def clean_situation(text: str, max_chars: int) -> str:
    """The situation as we will use it, or :class:`InputError`."""
    text = "".join(ch for ch in text if ch in "\n\t" or ch.isprintable()).strip()
    if not text:
        raise InputError("describe a situation: the text is empty")
    if len(text) > max_chars:
        raise InputError(
            f"the situation is too long ({len(text)} characters; the limit is {max_chars})"
        )
    return text


def final_text(agent_id: str, text: str, status: TurnStatus, error: LLMError | None) -> str:
    """A turn's ``final_content``: its text, and a line saying why it is missing or short.

    The line is not streamed: the deltas are the text the provider sent, nothing else.
    """
    if status is TurnStatus.ERROR:
        if not text:
            return f"[{agent_id} is experiencing technical difficulties]"
        if isinstance(error, StreamBroken) and error.error_class != "Timeout":
            return f"{text}\n\n[{agent_id}'s reply was cut off by the provider]"
        why = f": {error.message}" if error is not None else ""
        return f"{text}\n\n[{agent_id}'s reply was cut off{why}]"
    if status is TurnStatus.CANCELLED and not text:
        return f"[{agent_id} was stopped]"
    return text


class Network:
    """Communication paths between agents. Emergency paths can be switched on and off."""

    def __init__(self) -> None:
        self.emergency = False

    def paths(self) -> Iterable[tuple[str, str]]:
        yield from NORMAL_PATHS
        if self.emergency:
            yield from EMERGENCY_PATHS

    def hears(self, agent_id: str) -> list[str]:
        """The agents ``agent_id`` can hear, in council order."""
        linked = {b for a, b in self.paths() if a == agent_id}
        linked |= {a for a, b in self.paths() if b == agent_id}
        return [a.agent_id for a in ARCHETYPES if a.agent_id in linked]


@dataclass
class AgentState:
    archetype: Archetype
    memory_rounds: int
    interaction_count: int = 0
    memory: deque[tuple[str, str]] = field(init=False)
    lengths: LengthHistory = field(default_factory=LengthHistory)
    sentiments: list[Sentiment] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.memory = deque(maxlen=self.memory_rounds)

    @property
    def has_memory(self) -> bool:
        return bool(self.memory)

    def remember(self, situation: str, reply: str) -> None:
        if self.memory_rounds:
            self.memory.append((situation, reply))


@dataclass
class TurnResult:
    agent_id: str
    turn_id: str
    status: TurnStatus
    text: str


class Council:
    """The five agents of one session, with their memories and who hears whom."""

    def __init__(self, settings: Settings, llm: LLMClient) -> None:
        self.settings = settings
        self.llm = llm
        self.network = Network()
        self.agents = {a.agent_id: AgentState(a, settings.memory_rounds) for a in ARCHETYPES}
        self.latest: dict[str, str] = {}
        self._turn_scopes: dict[str, anyio.CancelScope] = {}

    def cancel_turn(self, turn_id: str) -> bool:
        scope = self._turn_scopes.get(turn_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def run_round(
        self,
        publish: Publish,
        *,
        session_id: str,
        round_id: str,
        situation: str,
        index: int = 1,
        seed: int | None = None,
        rounds: int = 1,
    ) -> list[TurnResult]:
        started = time.perf_counter()
        await publish(
            EventType.ROUND_STARTED,
            ev.round_started(
                session_id,
                round_id,
                situation=situation,
                index=index,
                agents=[a.agent_id for a in ARCHETYPES],
                rounds=rounds,
            ),
        )
        results: list[TurnResult] = []
        status = TurnStatus.OK
        try:
            for archetype in ARCHETYPES:
                result = await self._turn(
                    publish,
                    self.agents[archetype.agent_id],
                    session_id=session_id,
                    round_id=round_id,
                    situation=situation,
                    seed=seed,
                )
                results.append(result)
                if result.status is TurnStatus.ERROR:
                    status = TurnStatus.ERROR
        except anyio.get_cancelled_exc_class():
            status = TurnStatus.CANCELLED
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await publish(
                    EventType.ROUND_COMPLETE,
                    ev.round_complete(
                        session_id,
                        round_id,
                        index=index,
                        status=status,
                        turns=len(results),
                        duration_ms=int((time.perf_counter() - started) * 1000),
                    ),
                )
        return results

    async def _turn(
        self,
        publish: Publish,
        agent: AgentState,
        *,
        session_id: str,
        round_id: str,
        situation: str,
        seed: int | None,
    ) -> TurnResult:
        archetype = agent.archetype
        turn_id = uuid.uuid4().hex[:12]
        model = self.settings.model_for(archetype.agent_id)
        others = [
            (name, self.latest[name])
            for name in self.network.hears(archetype.agent_id)
            if name in self.latest
        ]
        request = CompletionRequest(
            model=model,
            messages=build_messages(archetype, situation, memory=list(agent.memory), others=others),
            temperature=archetype.temperature,
            max_tokens=self.settings.max_tokens,
            seed=None if seed is None else seed + agent.interaction_count,
        )
        await publish(
            EventType.AGENT_PROCESSING_STARTED,
            ev.agent_started(
                session_id,
                round_id,
                agent_id=archetype.agent_id,
                agent_type=archetype.agent_type,
                situation=situation,
                turn_id=turn_id,
                model=model,
                interaction_count=agent.interaction_count,
                has_memory=agent.has_memory,
            ),
        )

        progress = ProgressEstimate(agent.lengths.average)
        stream = self.llm.stream(request)
        status = TurnStatus.CANCELLED
        error: LLMError | None = None
        try:
            with anyio.CancelScope() as scope:
                self._turn_scopes[turn_id] = scope
                try:
                    async with stream:
                        async for delta in stream:
                            await publish(
                                EventType.AGENT_PROCESSING_UPDATE,
                                ev.agent_update(
                                    session_id,
                                    round_id,
                                    agent_id=archetype.agent_id,
                                    partial_content=delta,
                                    progress=progress.add(delta),
                                    turn_id=turn_id,
                                    streaming=stream.reply.streaming or "native",
                                ),
                            )
                    status = TurnStatus.OK
                except LLMError as exc:
                    status, error = TurnStatus.ERROR, exc
                except Exception as exc:
                    log.exception("%s: the turn failed", archetype.agent_id)
                    status = TurnStatus.ERROR
                    error = LLMError("internal error", error_class=type(exc).__name__)
        finally:
            self._turn_scopes.pop(turn_id, None)
            with anyio.CancelScope(shield=True):
                await self._complete(
                    publish,
                    agent,
                    stream.reply,
                    status,
                    error,
                    session_id=session_id,
                    round_id=round_id,
                    situation=situation,
                    turn_id=turn_id,
                )
        return TurnResult(archetype.agent_id, turn_id, status, stream.reply.text)

    async def _complete(
        self,
        publish: Publish,
        agent: AgentState,
        reply: Any,
        status: TurnStatus,
        error: LLMError | None,
        *,
        session_id: str,
        round_id: str,
        situation: str,
        turn_id: str,
    ) -> None:
        archetype = agent.archetype
        text: str = reply.text
        if error is not None:
            log.warning("%s: %s (%s)", archetype.agent_id, error.message, error.error_class)
        final = final_text(archetype.agent_id, text, status, error)
        if status is TurnStatus.OK or text:
            # What the agent is remembered to have said is what was published (and stored,
            # and remembered again by a session restored from the store).
            agent.interaction_count += 1
            agent.lengths.record(len(final))
            agent.remember(situation, final)
            self.latest[archetype.agent_id] = final
        sentiment = await anyio.to_thread.run_sync(analyse, text) if text else None
        if sentiment is not None:
            agent.sentiments.append(sentiment)
        extra: dict[str, Any] = {"attempts": reply.attempts}
        if reply.reasoning:
            extra["reasoning"] = reply.reasoning
        if error is not None:
            extra["error_class"] = error.error_class
            extra["error"] = error.message
            extra["partial"] = isinstance(error, StreamBroken)
        await publish(
            EventType.AGENT_PROCESSING_COMPLETE,
            ev.agent_complete(
                session_id,
                round_id,
                agent_id=archetype.agent_id,
                agent_type=archetype.agent_type,
                final_content=final,
                sentiment=(sentiment or Sentiment(0.0, 0.5)).payload(),
                situation=situation,
                interaction_count=agent.interaction_count,
                has_memory=agent.has_memory,
                turn_id=turn_id,
                status=status,
                streaming=reply.streaming,
                model=reply.model,
                usage=reply.usage,
                duration_ms=reply.elapsed_ms(),
                first_token_ms=reply.first_token_ms,
                extra=extra,
            ),
        )
