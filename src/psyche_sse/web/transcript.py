"""A session's conversation so far, folded from its events, for a page rendered mid-round.

The page is rendered from the events up to :attr:`Transcript.last_id`, and its stream
follows on from that id, so a viewer who arrives (or reloads) mid-turn sees the text so far
and then the live deltas, with no gap and no repeat.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..events import Event, EventType
from ..store import RUNNING
from ..store import Transcript as StoredTranscript


@dataclass
class Turn:
    turn_id: str
    round_id: str
    agent_id: str
    started: dict[str, Any]
    parts: list[str] = field(default_factory=list)
    progress: float = 0.0
    complete: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass
class Round:
    round_id: str
    index: int
    situation: str
    turns: list[Turn] = field(default_factory=list)
    complete: dict[str, Any] | None = None

    @property
    def current_turn(self) -> Turn | None:
        if self.complete is None and self.turns and self.turns[-1].complete is None:
            return self.turns[-1]
        return None


@dataclass
class Transcript:
    session_id: str
    rounds: list[Round] = field(default_factory=list)
    last_id: int = 0
    _turns: dict[str, Turn] = field(default_factory=dict, repr=False)

    @classmethod
    def from_events(cls, session_id: str, events: Iterable[Event]) -> Transcript:
        transcript = cls(session_id)
        for event in events:
            transcript.apply(event)
        return transcript

    @classmethod
    def from_store(cls, stored: StoredTranscript) -> Transcript:
        """A session's conversation as the store has it (after a restart, say), up to
        ``stored.last_event_id``."""
        transcript = cls(stored.id, last_id=stored.last_event_id)
        for r in stored.rounds:
            round_ = Round(r.id, r.index, r.situation)
            if r.status != RUNNING:
                round_.complete = {"status": r.status, "duration_ms": r.duration_ms}
            for t in r.turns:
                turn = Turn(t.id, r.id, t.agent_id, {"metadata": {"model": t.model}}, [t.text])
                if t.status == RUNNING:
                    turn.progress = min(0.9, len(t.text) / 450)
                else:
                    turn.progress = 1.0
                    turn.complete = {
                        "agent_id": t.agent_id,
                        "final_content": t.text,
                        "sentiment": t.sentiment or {},
                        "metadata": {
                            "status": t.status,
                            "model": t.model,
                            "streaming": t.streaming,
                            "usage": t.usage,
                            "duration_ms": t.duration_ms,
                            "first_token_ms": t.first_token_ms,
                            "error": t.error,
                            "error_class": t.error_class,
                        },
                    }
                round_.turns.append(turn)
                transcript._turns[turn.turn_id] = turn
            transcript.rounds.append(round_)
        return transcript

    @property
    def running(self) -> bool:
        return bool(self.rounds) and self.rounds[-1].complete is None

    @property
    def last_round(self) -> Round | None:
        return self.rounds[-1] if self.rounds else None

    def apply(self, event: Event) -> None:
        self.last_id = max(self.last_id, event.id)
        data = event.data
        if event.type is EventType.ROUND_STARTED:
            self.rounds.append(
                Round(
                    data["round_id"],
                    int(data.get("index", len(self.rounds) + 1)),
                    data["situation"],
                )
            )
            return
        round_ = self._round(data.get("round_id"))
        if round_ is None:  # its start is older than the retained history
            return
        if event.type is EventType.ROUND_COMPLETE:
            round_.complete = data
        elif event.type is EventType.AGENT_PROCESSING_STARTED:
            started = Turn(event.turn_id or "", round_.round_id, data["agent_id"], data)
            round_.turns.append(started)
            self._turns[started.turn_id] = started
        elif event.type is EventType.AGENT_PROCESSING_UPDATE:
            turn = self._turns.get(event.turn_id or "")
            if turn is not None:
                turn.parts.append(data["partial_content"])
                turn.progress = float(data.get("progress", turn.progress))
        elif event.type is EventType.AGENT_PROCESSING_COMPLETE:
            turn = self._turns.get(event.turn_id or "")
            if turn is not None:
                turn.complete = data
                turn.progress = 1.0

    def _round(self, round_id: object) -> Round | None:
        for round_ in reversed(self.rounds):
            if round_.round_id == round_id:
                return round_
        return None
