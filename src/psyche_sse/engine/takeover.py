"""Ending a round whose worker stopped (killed, crashed, or cut off from Redis).

What the round had published is all in its session's stream: the worker that takes it over
folds those events into the round as it stood, completes each turn still running with its
text so far, ends the round, and publishes all of it into the same stream, where every viewer,
on any worker, sees it. Nothing is run again.
"""

from __future__ import annotations

import logging

from ..council import final_text
from ..errors import LLMError
from ..events import AgentComplete, CompleteMeta, ConversationState, Ending, Payload, RoundComplete
from ..sentiment import SentimentScores
from ..state import measure
from ..transcript import Round, Status, Transcript, Turn
from .publisher import Publisher

log = logging.getLogger(__name__)

WORKER_LOST = "interrupted: the worker running it stopped"


def endings(
    transcript: Transcript, why: str = WORKER_LOST, status: Ending = Status.CANCELLED
) -> list[Payload]:
    """The events that end every round of ``transcript`` still running: a ``complete``
    for each of its turns still running (their text so far, status error), its
    ``round_complete`` (``status``; stopped, by default: the run ends there) and its
    ``conversation_state``."""
    out: list[Payload] = []
    for round_ in transcript.rounds:
        if round_.running:
            out.extend(_turn_end(transcript.id, round_, t, why) for t in round_.turns if t.running)
            out.extend(_round_end(transcript.id, round_, why, status))
    return out


def _turn_end(session_id: str, round_: Round, turn: Turn, why: str) -> AgentComplete:
    error = LLMError(why, error_class="WorkerLost")
    return AgentComplete(
        session_id=session_id,
        round_id=round_.id,
        agent_id=turn.agent_id,
        final_content=final_text(turn.agent_id, turn.text, Status.ERROR, error),
        sentiment=SentimentScores(),
        metadata=CompleteMeta(
            situation=round_.situation,
            interaction_count=turn.interaction_count,
            has_memory=turn.has_memory,
            agent_type=turn.agent_type,
            turn_id=turn.id,
            status=Status.ERROR,
            streaming=turn.streaming,
            model=turn.model or "",
            usage=None,
            duration_ms=0,
            first_token_ms=None,
            error_class=error.error_class,
            error=error.message,
            partial=bool(turn.text),
        ),
    )


def _round_end(session_id: str, round_: Round, why: str, status: Ending) -> list[Payload]:
    return [
        RoundComplete(
            session_id=session_id,
            round_id=round_.id,
            index=round_.index,
            status=status,
            turns=len(round_.turns),
            duration_ms=0,
            run_index=round_.run_index,
            rounds=round_.run_rounds,
            reason=why,
        ),
        ConversationState(
            session_id=session_id,
            round_id=round_.id,
            round=round_.index,
            metrics=measure([]),
            guidance=(),
            emergency=False,
        ),
    ]


async def end_orphaned(publish: Publisher, session_id: str) -> int:
    """End the running rounds of a session whose worker stopped: how many events that took."""
    events = await publish.bus.history(session_id)
    payloads = endings(Transcript.from_events(session_id, events))
    for payload in payloads:
        await publish(payload)
    if payloads:
        log.warning("session %s: its running round was ended for its stopped worker", session_id)
    return len(payloads)
