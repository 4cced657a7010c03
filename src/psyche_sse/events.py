"""The event protocol: one frozen dataclass per event type, and its SSE encoding.

Every event's JSON form carries ``type``, ``timestamp``, ``session_id`` and ``round_id`` at
its top level, then its own fields, in the order of its class's fields (:mod:`.plain` makes
the JSON, and the published schema, from these classes). Each event type also knows how it
changes a :class:`~psyche_sse.transcript.Transcript` (its ``apply``), so folding events into
a conversation is one call whatever the type.

An :class:`Event` is a payload with its per-session sequence id; it renders itself to JSON
once and caches the result, so every subscriber of a format shares the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from .archetypes import Archetype
from .plain import OMIT_NONE, json_schema, plain, unplain
from .sentiment import SentimentScores
from .transcript import (
    Heard,
    Metrics,
    Path,
    Round,
    RoundState,
    Status,
    Transcript,
    Turn,
    compose_situation,
)


class EventType(StrEnum):
    ROUND_STARTED = "round_started"
    AGENT_PROCESSING_STARTED = "agent_processing_started"
    AGENT_PROCESSING_UPDATE = "agent_processing_update"
    AGENT_PROCESSING_COMPLETE = "agent_processing_complete"
    ROUND_COMPLETE = "round_complete"
    CONVERSATION_STATE = "conversation_state"
    EMERGENCY_STATUS = "emergency_status"
    NETWORK_UPDATE = "network_update"
    STIMULUS_INJECTED = "stimulus_injected"
    # Never published: a stream sends it first to a client it cannot replay to.
    SESSION_HISTORY = "session_history"
    # Not a session's: the status stream's, every few seconds (:class:`SystemStatus`).
    SYSTEM_STATUS = "system_status"


Ending = Literal[Status.OK, Status.ERROR, Status.CANCELLED]
"""How a turn or a round ends, in an event."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --- who an event is about ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoundContext:
    """One round of a run: what its events carry about it."""

    session_id: str
    round_id: str
    base: str
    """The situation the person gave for the run."""
    index: int = 1
    rounds: int = 1
    stimulus: str | None = None
    """What the person added for this round."""
    left_off: str | None = None
    """Where the previous round left the conversation, in a line."""
    run_index: int = 1
    """Its place in the run (from 1); :attr:`rounds` is the run's length."""

    @property
    def situation(self) -> str:
        """The round's situation: :attr:`stimulus`, :attr:`base` and :attr:`left_off`."""
        return compose_situation(self.base, self.stimulus, self.left_off)

    def turn(self, turn_id: str, agent: Archetype, model: str) -> TurnContext:
        return TurnContext(self.session_id, self.round_id, turn_id, agent, self.situation, model)


@dataclass(frozen=True, slots=True)
class TurnContext:
    """One agent's turn in a round: its ids, its agent and the situation it answers."""

    session_id: str
    round_id: str
    turn_id: str
    agent: Archetype
    situation: str
    model: str

    @property
    def agent_id(self) -> str:
        return self.agent.agent_id


# --- the events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Payload:
    type: EventType
    timestamp: str = field(default_factory=utc_now)
    session_id: str
    round_id: str | None

    @property
    def turn_id(self) -> str | None:
        return None

    def apply(self, transcript: Transcript) -> Round | Turn | None:
        """Fold this event into ``transcript``; the round or turn it changed."""
        return None

    def _round(self, transcript: Transcript) -> Round | None:
        return transcript.round(self.round_id)

    def _turn(self, transcript: Transcript) -> Turn | None:
        round_ = transcript.round(self.round_id)
        return round_.turn(self.turn_id or "") if round_ is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundStarted(_Payload):
    type: Literal[EventType.ROUND_STARTED] = EventType.ROUND_STARTED
    round_id: str
    situation: str
    index: int
    agents: tuple[str, ...]
    rounds: int = 1
    """How many rounds the run this round belongs to has."""
    run_index: int = 1
    """This round's place in its run, from 1 ("round 2 of 5")."""
    stimulus: str | None = field(default=None, metadata=OMIT_NONE)
    left_off: str | None = field(default=None, metadata=OMIT_NONE)

    @classmethod
    def of(cls, ctx: RoundContext, agents: Iterable[str]) -> RoundStarted:
        return cls(
            session_id=ctx.session_id,
            round_id=ctx.round_id,
            situation=ctx.situation,
            index=ctx.index,
            agents=tuple(agents),
            rounds=ctx.rounds,
            run_index=ctx.run_index,
            stimulus=ctx.stimulus,
            left_off=ctx.left_off,
        )

    def apply(self, transcript: Transcript) -> Round:
        round_ = Round(
            id=self.round_id,
            index=self.index,
            situation=self.situation,
            started=self.timestamp,
            stimulus=self.stimulus,
            left_off=self.left_off,
            run_index=self.run_index,
            run_rounds=self.rounds,
        )
        transcript.rounds.append(round_)
        return round_


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundComplete(_Payload):
    type: Literal[EventType.ROUND_COMPLETE] = EventType.ROUND_COMPLETE
    round_id: str
    index: int
    status: Ending
    duration_ms: int
    turns: int
    run_index: int = 1
    """This round's place in its run, from 1."""
    rounds: int = 1
    """How many rounds its run has: the run ends here when ``run_index`` reaches it, or
    when the round was stopped."""
    cost_usd: float | None = field(default=None, metadata=OMIT_NONE)
    """What the round's turns cost in US dollars (those whose cost is known)."""
    session_cost_usd: float | None = field(default=None, metadata=OMIT_NONE)
    """What the session's turns have cost so far, this round's included."""
    reason: str | None = field(default=None, metadata=OMIT_NONE)
    """Why a round was stopped before its last turn by something other than a person (the
    session's budget), in a sentence."""

    @property
    def ends_run(self) -> bool:
        return self.run_index >= self.rounds or self.status is Status.CANCELLED

    def apply(self, transcript: Transcript) -> Round | None:
        round_ = self._round(transcript)
        if round_ is not None:
            round_.status = self.status
            round_.finished = self.timestamp
            round_.duration_ms = self.duration_ms
            round_.run_index, round_.run_rounds = self.run_index, self.rounds
            round_.reason = self.reason
        return round_


@dataclass(frozen=True, slots=True, kw_only=True)
class StartedMeta:
    interaction_count: int
    has_memory: bool
    turn_id: str
    round_id: str
    model: str
    heard: tuple[Heard, ...] = ()
    """The agents whose latest reply this turn hears, and along which kind of path."""
    guidance: tuple[str, ...] = ()
    """The lines of guidance the conversation's state added to this turn's prompt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStarted(_Payload):
    type: Literal[EventType.AGENT_PROCESSING_STARTED] = EventType.AGENT_PROCESSING_STARTED
    round_id: str
    agent_id: str
    agent_type: str
    situation: str
    metadata: StartedMeta

    @classmethod
    def of(
        cls,
        ctx: TurnContext,
        *,
        interaction_count: int,
        has_memory: bool,
        heard: tuple[Heard, ...] = (),
        guidance: tuple[str, ...] = (),
    ) -> AgentStarted:
        return cls(
            session_id=ctx.session_id,
            round_id=ctx.round_id,
            agent_id=ctx.agent.agent_id,
            agent_type=ctx.agent.agent_type,
            situation=ctx.situation,
            metadata=StartedMeta(
                interaction_count=interaction_count,
                has_memory=has_memory,
                turn_id=ctx.turn_id,
                round_id=ctx.round_id,
                model=ctx.model,
                heard=heard,
                guidance=guidance,
            ),
        )

    @property
    def turn_id(self) -> str:
        return self.metadata.turn_id

    def apply(self, transcript: Transcript) -> Turn | None:
        round_ = self._round(transcript)
        if round_ is None:  # its start is older than the history folded
            return None
        turn = Turn(
            id=self.turn_id,
            agent_id=self.agent_id,
            agent_type=self.agent_type,
            started=self.timestamp,
            model=self.metadata.model,
            interaction_count=self.metadata.interaction_count,
            has_memory=self.metadata.has_memory,
            heard=self.metadata.heard,
            guidance=self.metadata.guidance,
        )
        round_.turns.append(turn)
        return turn


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateMeta:
    chunk_size: int
    turn_id: str
    streaming: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentUpdate(_Payload):
    type: Literal[EventType.AGENT_PROCESSING_UPDATE] = EventType.AGENT_PROCESSING_UPDATE
    round_id: str
    agent_id: str
    partial_content: str
    progress: float
    metadata: UpdateMeta

    @classmethod
    def of(cls, ctx: TurnContext, delta: str, *, progress: float, streaming: str) -> AgentUpdate:
        return cls(
            session_id=ctx.session_id,
            round_id=ctx.round_id,
            agent_id=ctx.agent.agent_id,
            partial_content=delta,
            progress=round(progress, 4),
            metadata=UpdateMeta(chunk_size=len(delta), turn_id=ctx.turn_id, streaming=streaming),
        )

    @property
    def turn_id(self) -> str:
        return self.metadata.turn_id

    def apply(self, transcript: Transcript) -> Turn | None:
        turn = self._turn(transcript)
        if turn is not None:
            turn.text += self.partial_content
            turn.streaming = self.metadata.streaming
        return turn


@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteMeta:
    situation: str
    interaction_count: int
    has_memory: bool
    agent_type: str
    turn_id: str
    status: Ending
    streaming: str | None
    model: str
    usage: dict[str, int] | None
    duration_ms: int
    first_token_ms: int | None
    cost_usd: float | None = field(default=None, metadata=OMIT_NONE)
    """What the turn cost in US dollars (LiteLLM's price map): 0 for the offline model,
    left out when the model's price or the usage is unknown."""
    progress: float = 1.0
    attempts: int = 1
    reasoning: str | None = field(default=None, metadata=OMIT_NONE)
    error_class: str | None = field(default=None, metadata=OMIT_NONE)
    error: str | None = field(default=None, metadata=OMIT_NONE)
    partial: bool | None = field(default=None, metadata=OMIT_NONE)
    remembered: bool = False
    """Whether the reply joined the agent's memory (it is heard by the next rounds)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentComplete(_Payload):
    type: Literal[EventType.AGENT_PROCESSING_COMPLETE] = EventType.AGENT_PROCESSING_COMPLETE
    round_id: str
    agent_id: str
    final_content: str
    sentiment: SentimentScores
    metadata: CompleteMeta

    @property
    def turn_id(self) -> str:
        return self.metadata.turn_id

    @property
    def status(self) -> Status:
        return self.metadata.status

    def apply(self, transcript: Transcript) -> Turn | None:
        turn = self._turn(transcript)
        if turn is not None:
            meta = self.metadata
            turn.status = meta.status
            turn.text = self.final_content
            turn.finished = self.timestamp
            turn.model = meta.model
            turn.streaming = meta.streaming
            turn.reasoning = meta.reasoning
            turn.sentiment = self.sentiment
            turn.usage = meta.usage
            turn.cost_usd = meta.cost_usd
            turn.interaction_count = meta.interaction_count
            turn.has_memory = meta.has_memory
            turn.duration_ms = meta.duration_ms
            turn.first_token_ms = meta.first_token_ms
            turn.error = meta.error
            turn.error_class = meta.error_class
        return turn


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationState(_Payload):
    """The conversation's state after round number ``round``, sent after its
    ``round_complete``: its metrics, the guidance the next round's prompts get, and whether
    emergency mode is on from now."""

    type: Literal[EventType.CONVERSATION_STATE] = EventType.CONVERSATION_STATE
    round_id: str
    round: int
    metrics: Metrics
    guidance: tuple[str, ...]
    emergency: bool

    def apply(self, transcript: Transcript) -> Round | None:
        round_ = self._round(transcript)
        if round_ is not None:
            round_.state = RoundState(
                metrics=self.metrics, guidance=self.guidance, emergency=self.emergency
            )
        return round_


@dataclass(frozen=True, slots=True, kw_only=True)
class EmergencyStatus(_Payload):
    """Emergency mode switched on or off after round number ``round``."""

    type: Literal[EventType.EMERGENCY_STATUS] = EventType.EMERGENCY_STATUS
    round_id: str
    active: bool
    reason: str
    stagnation: float
    round: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkUpdate(_Payload):
    """Who hears whom: every path, and which are open. Sent at a run's start and whenever
    the open paths change; ``round_id`` is the round it applies from (None before the
    session's first)."""

    type: Literal[EventType.NETWORK_UPDATE] = EventType.NETWORK_UPDATE
    paths: tuple[Path, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StimulusInjected(_Payload):
    """A person's stimulus was accepted: it opens round number ``round`` (its situation
    starts with ``text``), whose id is ``round_id``."""

    type: Literal[EventType.STIMULUS_INJECTED] = EventType.STIMULUS_INJECTED
    round_id: str
    text: str
    round: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionHistory(_Payload):
    """The whole conversation as of event ``last_event_id``, for a client whose position
    the stream cannot replay from (the server restarted since, or it is older than the
    history kept in memory): it replaces what the client has, and the events after
    ``last_event_id`` follow. ``round_id`` is the newest round's, None before the first.

    ``running``, ``round_status`` and ``round_index`` say where that newest round stands, so
    a client learns whether it is still going (and how it ended) without reading the
    transcript: ``running`` is true exactly while ``round_status`` is ``running``. Before
    the session's first round they are false, None and None."""

    type: Literal[EventType.SESSION_HISTORY] = EventType.SESSION_HISTORY
    running: bool
    round_status: Status | None
    round_index: int | None
    last_event_id: int
    transcript: Transcript

    @classmethod
    def of(cls, transcript: Transcript) -> SessionHistory:
        last = transcript.last_round
        return cls(
            session_id=transcript.id,
            round_id=last.id if last else None,
            running=last is not None and last.running,
            round_status=last.status if last else None,
            round_index=last.index if last else None,
            last_event_id=transcript.last_event_id,
            transcript=transcript,
        )

    def apply(self, transcript: Transcript) -> None:
        # It replaces the conversation folded so far.
        transcript.rounds[:] = self.transcript.rounds
        transcript.title = self.transcript.title


Payload = (
    RoundStarted
    | RoundComplete
    | AgentStarted
    | AgentUpdate
    | AgentComplete
    | ConversationState
    | EmergencyStatus
    | NetworkUpdate
    | StimulusInjected
    | SessionHistory
)
"""Every event type of the protocol."""

PAYLOADS: tuple[type[Payload], ...] = (
    NetworkUpdate,
    StimulusInjected,
    RoundStarted,
    AgentStarted,
    AgentUpdate,
    AgentComplete,
    RoundComplete,
    ConversationState,
    EmergencyStatus,
    SessionHistory,
)


# --- the status stream's event ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningRound:
    """A round running now, and who is following its session."""

    session_id: str
    title: str
    round_id: str
    index: int
    """The round's number in its session."""
    run_index: int
    rounds: int
    """Its place in its run, and the run's length."""
    started: str
    speaking: str | None
    """The agent whose turn is streaming, None between turns."""
    viewers: int
    """Open event streams of the session."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelStatus:
    """A configured model's health since the server started."""

    model: str
    offline: bool
    agents: tuple[str, ...]
    """The agents configured to speak through it."""
    turns_ok: int
    turns_error: int
    last_success: str | None
    last_error: str | None
    last_error_class: str | None
    retries: int
    rate_limit_waits: int
    rate_limit_wait_s: float
    mean_first_token_ms: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemStatus:
    """What the server is doing: sent on the status stream (``/status/stream``,
    ``/api/status/events``) every few seconds, and by ``GET /api/status``. It belongs to no
    session, so unlike the session events it has no ``session_id`` or ``round_id``."""

    type: Literal[EventType.SYSTEM_STATUS] = EventType.SYSTEM_STATUS
    timestamp: str = field(default_factory=utc_now)
    version: str
    uptime_s: float
    llm_ready: bool
    """Whether LiteLLM is imported and warmed up (a turn started before waits for it)."""
    memory_rss_bytes: int
    database_bytes: int | None
    """The SQLite file and its write-ahead log; None for a database in memory."""
    rounds_running: int
    viewers: int
    """Open event streams of every session."""
    rounds: tuple[RunningRound, ...]
    models: tuple[ModelStatus, ...]

    def json(self) -> str:
        return json.dumps(plain(self), ensure_ascii=False, separators=(",", ":"))


def _union(*, status: bool = False) -> Any:
    from pydantic import Field

    if status:
        return Annotated[Payload | SystemStatus, Field(discriminator="type")]
    return Annotated[Payload, Field(discriminator="type")]


def parse(data: dict[str, Any]) -> Payload:
    """An event's payload from its JSON form; ValueError when it is not a valid one."""
    payload: Payload = unplain(_union(), data)
    return payload


def schema() -> dict[str, Any]:
    """The JSON schema of every event's ``data``, as published in ``docs/events.schema.json``."""
    document = json_schema(_union(status=True))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "psyche-sse events",
        "description": (
            "The data of every Server-Sent Event psyche-sse sends; the SSE event name is the "
            "data's type and the SSE id its per-session sequence number (the status stream's "
            "system_status has no session, and no id)."
        ),
        **document,
    }


# --- the published event ----------------------------------------------------------------


@dataclass(slots=True)
class Event:
    """One published event: ``id`` is the session's sequence number, strictly increasing."""

    id: int
    payload: Payload
    _json: str | None = field(default=None, repr=False, compare=False)
    _encoded: dict[str, bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def type(self) -> EventType:
        return self.payload.type

    @property
    def session_id(self) -> str:
        return self.payload.session_id

    @property
    def turn_id(self) -> str | None:
        return self.payload.turn_id

    @property
    def data(self) -> dict[str, Any]:
        """The payload's JSON form, as a dict (made anew at each use: read the payload's
        attributes instead, except to compare wire forms)."""
        result: dict[str, Any] = plain(self.payload)
        return result

    def json(self) -> str:
        """The payload as compact JSON, rendered once."""
        if self._json is None:
            self._json = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return self._json

    def encoded(self, fmt: str, render: Callable[[Event], bytes]) -> bytes:
        """The event rendered for one wire format, by ``render`` the first time only.

        Every subscriber of that format then shares the same bytes.
        """
        if self._encoded is None:
            self._encoded = {}
        cached = self._encoded.get(fmt)
        if cached is None:
            cached = self._encoded[fmt] = render(self)
        return cached

    def json_line(self) -> str:
        """The CLI's ``--json`` form: the payload with its ``id``."""
        return json.dumps({"id": self.id, **self.data}, ensure_ascii=False)


def merge_updates(events: Iterable[Event]) -> Event:
    """Fold consecutive ``agent_processing_update`` events of one turn into one.

    The merged event keeps the last id (so a client resuming from it misses nothing) and
    the last progress; its text is the concatenation, so no delta is lost.
    """
    batch = list(events)
    if len(batch) == 1:
        return batch[0]
    last = batch[-1].payload
    assert isinstance(last, AgentUpdate)
    text = "".join(e.payload.partial_content for e in batch)  # type: ignore[union-attr]
    merged = replace(
        last, partial_content=text, metadata=replace(last.metadata, chunk_size=len(text))
    )
    return Event(id=batch[-1].id, payload=merged)


# --- SSE --------------------------------------------------------------------------------

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode_sse(
    data: str,
    *,
    event: str | None = None,
    id: int | str | None = None,
    retry_ms: int | None = None,
) -> bytes:
    """One SSE message. Multi-line data becomes several ``data:`` lines, as the spec wants."""
    parts: list[str] = []
    if id is not None:
        parts.append(f"id: {id}\n")
    if event is not None:
        parts.append(f"event: {event}\n")
    if retry_ms is not None:
        parts.append(f"retry: {retry_ms}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()


def encode_comment(text: str = "") -> bytes:
    return f": {text}\n\n".encode()


if __name__ == "__main__":  # python -m psyche_sse.events > docs/events.schema.json
    print(json.dumps(schema(), indent=2, ensure_ascii=False))
