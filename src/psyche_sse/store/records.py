"""What the store hands back besides transcripts (:mod:`psyche_sse.transcript`): a line of
the sessions list, and what a council needs to carry a stored session on."""

from __future__ import annotations

from dataclasses import dataclass

from ..sentiment import SentimentScores
from ..transcript import RoundState, Status


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """A line of the sessions list. ``last_status`` is the status of the newest round."""

    id: str
    title: str
    created: str
    updated: str
    rounds: int
    last_status: Status | None = None


@dataclass(frozen=True, slots=True)
class Remembered:
    """A reply an agent remembers, oldest first. ``text`` and ``situation`` are None for
    replies older than the memory window: only their length and sentiment still count."""

    agent_id: str
    length: int
    sentiment: SentimentScores | None
    situation: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class CouncilMemory:
    """What a council needs to carry on a stored session after a restart."""

    id: str
    title: str
    event_hwm: int
    round_ids: tuple[str, ...]
    replies: tuple[Remembered, ...]
    states: tuple[tuple[int, RoundState], ...] = ()
    """The conversation's state after each round that has one: (round number, state)."""
    base: str | None = None
    """The situation the person gave for the newest round's run."""
    spent_usd: float | None = None
    """What the session's turns cost, those whose cost is known (None: none is)."""
    owner: int | None = None
    """The id of the user the session belongs to; None for one made with no accounts."""
