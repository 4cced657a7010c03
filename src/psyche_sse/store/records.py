"""What the store hands back: plain, frozen records of sessions, rounds and turns.

They hold only JSON types, so a transcript becomes JSON with :meth:`Transcript.to_dict` and
comes back whole with :meth:`Transcript.from_dict`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Statuses beyond the protocol's ok | error | cancelled.
RUNNING = "running"
INTERRUPTED = "interrupted"  # the process stopped (crash, kill) while it was running


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One agent's turn. ``text`` is the final text, or the partial text saved so far."""

    id: str
    agent_id: str
    agent_type: str
    status: str
    text: str
    started: str
    finished: str | None = None
    model: str | None = None
    streaming: str | None = None
    reasoning: str | None = None
    sentiment: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    interaction_count: int = 0
    has_memory: bool = False
    duration_ms: int | None = None
    first_token_ms: int | None = None
    error: str | None = None
    error_class: str | None = None


@dataclass(frozen=True, slots=True)
class RoundRecord:
    id: str
    index: int
    situation: str
    status: str
    started: str
    stimulus: str | None = None
    finished: str | None = None
    duration_ms: int | None = None
    turns: tuple[TurnRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """A line of the sessions list. ``last_status`` is the status of the newest round."""

    id: str
    title: str
    created: str
    updated: str
    rounds: int
    last_status: str | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    """A session's whole conversation.

    ``last_event_id`` is the id of the last event it reflects: a live view shows the
    transcript, then subscribes to the session's events after that id, with no gap and no
    duplicate.
    """

    id: str
    title: str
    created: str
    updated: str
    last_event_id: int
    rounds: tuple[RoundRecord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        rounds = tuple(
            RoundRecord(
                **{
                    **r,
                    "turns": tuple(TurnRecord(**t) for t in r.get("turns", ())),
                }
            )
            for r in data.get("rounds", ())
        )
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**fields, "rounds": rounds})


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply an agent remembers, oldest first. ``text`` and ``situation`` are None for
    replies older than the memory window: only their length and sentiment still count."""

    agent_id: str
    length: int
    sentiment: dict[str, Any] | None
    situation: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class SessionHistory:
    """What a council needs to carry on a stored session after a restart."""

    id: str
    title: str
    event_hwm: int
    round_ids: tuple[str, ...]
    replies: tuple[Reply, ...]
