"""A session's conversation: its rounds and their turns, as one model everywhere.

The store reads it back, the events fold into it (:meth:`Transcript.apply`, each event type
knowing its own change), the page and the exports render it, and ``session_history`` carries
it as JSON (:meth:`Transcript.to_dict`, read back whole with :meth:`Transcript.from_dict`).
A turn's facts as people read them are formatted here only (:func:`turn_facts`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .plain import plain, unplain
from .sentiment import SentimentScores

if TYPE_CHECKING:
    from .events import Event


class Status(StrEnum):
    """Where a round or a turn stands. Events end one with ok, error or cancelled."""

    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the process stopped (crash, kill) while it was running


class PathKind(StrEnum):
    NORMAL = "normal"
    EMERGENCY = "emergency"


@dataclass(frozen=True, slots=True, kw_only=True)
class Path:
    """A communication path between two agents (both directions); ``active`` while open."""

    a: str
    b: str
    kind: PathKind
    active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Heard:
    """An agent a turn heard, and whether along an emergency path."""

    agent_id: str
    emergency: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """The conversation's state after a round, each in [0, 1] (:mod:`psyche_sse.state`)."""

    conflict: float
    engagement: float
    diversity: float
    repetition: float
    intensity: float
    stagnation: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundState:
    """What the conversation was like after a round: its metrics, the guidance they call for
    in the next round, and whether emergency mode is on from then."""

    metrics: Metrics
    guidance: tuple[str, ...] = ()
    emergency: bool = False


# A turn's progress bar for text with no estimate (a running turn read back from the store):
# this many characters fill 90% of it.
_NOMINAL_CHARS = 450


@dataclass(slots=True, kw_only=True)
class Turn:
    """One agent's turn. ``text`` is the final text, or the text so far while it runs."""

    id: str
    agent_id: str
    agent_type: str
    status: Status = Status.RUNNING
    text: str = ""
    started: str
    finished: str | None = None
    model: str | None = None
    streaming: str | None = None
    reasoning: str | None = None
    sentiment: SentimentScores | None = None
    usage: dict[str, int] | None = None
    cost_usd: float | None = None
    """What the turn cost in US dollars; None when the model's price or the usage is
    unknown."""
    interaction_count: int = 0
    has_memory: bool = False
    duration_ms: int | None = None
    first_token_ms: int | None = None
    error: str | None = None
    error_class: str | None = None
    heard: tuple[Heard, ...] = ()
    guidance: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return self.status is Status.RUNNING

    @property
    def progress(self) -> float:
        """An estimate from the text's length while running (live deltas carry a better
        one); 1.0 once it ended."""
        if self.running:
            return min(0.9, len(self.text) / _NOMINAL_CHARS)
        return 1.0


@dataclass(slots=True, kw_only=True)
class Round:
    id: str
    index: int
    situation: str
    status: Status = Status.RUNNING
    started: str
    stimulus: str | None = None
    finished: str | None = None
    duration_ms: int | None = None
    turns: list[Turn] = field(default_factory=list)
    left_off: str | None = None
    state: RoundState | None = None
    run_index: int = 1
    """Its place in the run it belongs to (from 1)."""
    run_rounds: int = 1
    """How many rounds that run has."""
    reason: str | None = None
    """Why the round ended early when it was not stopped by a person (a budget)."""

    @property
    def cost_usd(self) -> float | None:
        """What its turns cost, those whose cost is known; None when none is."""
        return total_cost(t.cost_usd for t in self.turns)

    @property
    def base(self) -> str:
        """The situation the person gave, without this round's stimulus and left-off line."""
        return base_situation(self.situation, self.stimulus, self.left_off)

    @property
    def running(self) -> bool:
        return self.status is Status.RUNNING

    @property
    def current_turn(self) -> Turn | None:
        """The turn streaming now, if any."""
        if self.running and self.turns and self.turns[-1].running:
            return self.turns[-1]
        return None

    def turn(self, turn_id: str) -> Turn | None:
        for turn in reversed(self.turns):
            if turn.id == turn_id:
                return turn
        return None


@dataclass(slots=True, kw_only=True)
class Transcript:
    """A session's whole conversation.

    ``last_event_id`` is the id of the last event it reflects: a live view shows the
    transcript, then follows the session's events after that id, with no gap and no
    duplicate.
    """

    id: str
    title: str = ""
    created: str = ""
    updated: str = ""
    last_event_id: int = 0
    rounds: list[Round] = field(default_factory=list)

    @classmethod
    def from_events(cls, session_id: str, events: Iterable[Event]) -> Transcript:
        transcript = cls(id=session_id)
        for event in events:
            transcript.apply(event)
        return transcript

    def apply(self, event: Event) -> Round | Turn | None:
        """Fold one event in; returns the round or turn it changed (None: nothing known
        to change, such as a turn whose round started before the history this holds)."""
        self.last_event_id = max(self.last_event_id, event.id)
        if not self.created:
            self.created = event.payload.timestamp
        self.updated = event.payload.timestamp
        return event.payload.apply(self)

    @property
    def running(self) -> bool:
        return bool(self.rounds) and self.rounds[-1].running

    @property
    def last_round(self) -> Round | None:
        return self.rounds[-1] if self.rounds else None

    @property
    def cost_usd(self) -> float | None:
        """What the session's turns cost, those whose cost is known; None when none is."""
        return total_cost(r.cost_usd for r in self.rounds)

    def round(self, round_id: str | None) -> Round | None:
        for round_ in reversed(self.rounds):
            if round_.id == round_id:
                return round_
        return None

    def to_dict(self) -> dict[str, Any]:
        return plain(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        """The transcript from :meth:`to_dict`'s form; ValueError when it is not one."""
        return unplain(cls, data)


def compose_situation(base: str, stimulus: str | None, left_off: str | None) -> str:
    """A round's situation: the person's stimulus first, then the situation they gave, then
    a line on where the council left it."""
    return "\n\n".join(part for part in (stimulus, base, left_off) if part)


def base_situation(situation: str, stimulus: str | None, left_off: str | None) -> str:
    """The inverse of :func:`compose_situation`."""
    if stimulus and situation.startswith(stimulus + "\n\n"):
        situation = situation[len(stimulus) + 2 :]
    if left_off and situation.endswith("\n\n" + left_off):
        situation = situation[: -len(left_off) - 2]
    return situation


def seconds(ms: int | float | None) -> str | None:
    """A duration as people read it: ``850 ms``, ``2.4 s``."""
    if ms is None:
        return None
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{int(ms)} ms"


def total_cost(costs: Iterable[float | None]) -> float | None:
    """The sum of the known costs; None when none is known."""
    known = [cost for cost in costs if cost is not None]
    return sum(known) if known else None


def usd(amount: float) -> str:
    """An amount of US dollars as people read it: ``$1.24``, ``$0.0021``, and amounts
    below a hundredth of a cent to two significant digits (``$0.000012``)."""
    if amount >= 1:
        return f"${amount:,.2f}"
    if amount >= 0.00005:  # four decimals show it
        return f"${amount:.4f}"
    if amount <= 0:
        return "$0"
    digits = min(12, 1 - math.floor(math.log10(amount)))
    return f"${amount:.{digits}f}"


def cost_text(cost: float | None) -> str:
    """A cost as a turn's card shows it: ``$0.0021``, ``free``, or ``cost unknown``."""
    if cost is None:
        return "cost unknown"
    return usd(cost) if cost else "free"


def turn_facts(turn: Turn, *, model_name: str | None = None) -> list[str]:
    """A finished turn's facts, in the order every view shows them: model · streaming mode ·
    first token · total · tokens · cost. ``model_name`` replaces the model's id when given."""
    tokens = (turn.usage or {}).get("completion_tokens")
    facts = [
        model_name or turn.model or "",
        f"{turn.streaming} streaming" if turn.streaming else "",
        f"first token {seconds(turn.first_token_ms)}" if turn.first_token_ms is not None else "",
        f"total {seconds(turn.duration_ms)}" if turn.duration_ms is not None else "",
        f"{tokens} tokens" if isinstance(tokens, int) and tokens else "",
        "" if turn.running else cost_text(turn.cost_usd),
    ]
    return [fact for fact in facts if fact]
