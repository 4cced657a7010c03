"""Events and agents for tests, built the way the council builds them."""

from __future__ import annotations

from typing import Any

from psyche_sse.archetypes import ARCHETYPES, BY_ID
from psyche_sse.events import (
    AgentComplete,
    AgentStarted,
    AgentUpdate,
    CompleteMeta,
    ConversationState,
    EmergencyStatus,
    Ending,
    Event,
    NetworkUpdate,
    Payload,
    RoundComplete,
    RoundContext,
    RoundStarted,
    SessionHistory,
    StimulusInjected,
    TurnContext,
)
from psyche_sse.sentiment import SentimentScores
from psyche_sse.transcript import Metrics, Path, PathKind, Status, Transcript

AGENT_IDS: tuple[str, ...] = tuple(a.agent_id for a in ARCHETYPES)
"""The council in speaking order."""

SID, RID, TID = "s", "r", "t1"
SITUATION = "A situation"
MODEL = "psyche/offline"


def round_ctx(
    session: str = SID, round_id: str = RID, situation: str = SITUATION, index: int = 1
) -> RoundContext:
    return RoundContext(session, round_id, situation, index=index)


def turn_ctx(
    turn: str = TID,
    agent: str = "Shadow",
    *,
    session: str = SID,
    round_id: str = RID,
    situation: str = SITUATION,
    model: str = MODEL,
) -> TurnContext:
    return TurnContext(session, round_id, turn, BY_ID[agent], situation, model)


def round_started(
    session: str = SID,
    round_id: str = RID,
    situation: str = SITUATION,
    index: int = 1,
    agents: tuple[str, ...] = AGENT_IDS,
) -> RoundStarted:
    return RoundStarted.of(round_ctx(session, round_id, situation, index), agents)


def started(
    turn: str = TID, agent: str = "Shadow", *, interaction_count: int = 0, **ctx: Any
) -> AgentStarted:
    return AgentStarted.of(
        turn_ctx(turn, agent, **ctx), interaction_count=interaction_count, has_memory=False
    )


def update(
    text: str,
    turn: str = TID,
    progress: float = 0.1,
    *,
    agent: str = "Shadow",
    streaming: str = "native",
    **ctx: Any,
) -> AgentUpdate:
    return AgentUpdate.of(
        turn_ctx(turn, agent, **ctx), text, progress=progress, streaming=streaming
    )


def complete(
    text: str,
    turn: str = TID,
    *,
    agent: str = "Shadow",
    status: Ending = Status.OK,
    sentiment: SentimentScores | None = None,
    remembered: bool | None = None,
    session: str = SID,
    round_id: str = RID,
    situation: str = SITUATION,
    **meta: Any,
) -> AgentComplete:
    """A turn's end; ``meta`` sets any field of its metadata (model, usage, error, …)."""
    fields: dict[str, Any] = {
        "situation": situation,
        "interaction_count": 1,
        "has_memory": False,
        "agent_type": BY_ID[agent].agent_type,
        "turn_id": turn,
        "status": status,
        "streaming": "native",
        "model": MODEL,
        "usage": None,
        "duration_ms": 1200,
        "first_token_ms": 100,
        "remembered": status is Status.OK if remembered is None else remembered,
    }
    return AgentComplete(
        session_id=session,
        round_id=round_id,
        agent_id=agent,
        final_content=text,
        sentiment=sentiment or SentimentScores(),
        metadata=CompleteMeta(**{**fields, **meta}),
    )


def round_complete(
    session: str = SID,
    round_id: str = RID,
    *,
    index: int = 1,
    status: Ending = Status.OK,
    duration_ms: int = 1300,
    turns: int = 5,
) -> RoundComplete:
    return RoundComplete(
        session_id=session,
        round_id=round_id,
        index=index,
        status=status,
        duration_ms=duration_ms,
        turns=turns,
    )


def history(transcript: Transcript) -> SessionHistory:
    return SessionHistory.of(transcript)


def numbered(*payloads: Payload, start: int = 1) -> list[Event]:
    """The payloads as published events, with ids from ``start``."""
    return [Event(start + i, payload) for i, payload in enumerate(payloads)]


def whole_turn(text: str, turn: str = TID, agent: str = "Shadow", **ctx: Any) -> list[Payload]:
    """A turn that streams ``text`` word by word and completes."""
    words = text.split(" ")
    deltas = [w + " " for w in words[:-1]] + [words[-1]]
    return [
        started(turn, agent, **ctx),
        *(update(d, turn, (i + 1) / len(deltas), agent=agent, **ctx) for i, d in enumerate(deltas)),
        complete(text, turn, agent=agent, **ctx),
    ]


def metrics(stagnation: float = 0.3, **values: float) -> Metrics:
    fields = dict.fromkeys(("conflict", "engagement", "diversity", "repetition", "intensity"), 0.5)
    return Metrics(**{**fields, **values, "stagnation": stagnation})


def state(
    session: str = SID,
    round_id: str = RID,
    *,
    round_index: int = 1,
    stagnation: float = 0.3,
    guidance: tuple[str, ...] = (),
    emergency: bool = False,
) -> ConversationState:
    return ConversationState(
        session_id=session,
        round_id=round_id,
        round=round_index,
        metrics=metrics(stagnation),
        guidance=guidance,
        emergency=emergency,
    )


def emergency(
    session: str = SID,
    round_id: str = RID,
    *,
    active: bool,
    stagnation: float = 0.7,
    round: int = 1,
) -> EmergencyStatus:
    return EmergencyStatus(
        session_id=session,
        round_id=round_id,
        active=active,
        reason="the conversation is stagnating" if active else "the conversation moves again",
        stagnation=stagnation,
        round=round,
    )


def network(
    session: str = SID, round_id: str | None = RID, *, emergency: bool = False
) -> NetworkUpdate:
    from psyche_sse.council import EMERGENCY_PATHS, NORMAL_PATHS

    paths = [Path(a=a, b=b, kind=PathKind.NORMAL, active=True) for a, b in NORMAL_PATHS]
    paths += [Path(a=a, b=b, kind=PathKind.EMERGENCY, active=emergency) for a, b in EMERGENCY_PATHS]
    return NetworkUpdate(session_id=session, round_id=round_id, paths=tuple(paths))


def stimulus(
    text: str, round: int, session: str = SID, round_id: str | None = RID
) -> StimulusInjected:
    return StimulusInjected(session_id=session, round_id=round_id, text=text, round=round)
