"""A database written before a server starts: sessions with known titles, times and states.

Faster than running rounds through a server, and exact: the tests know what the list must
show and in which order. A round left ``running`` here is what a crashed process leaves;
the server marks it interrupted when it opens the database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psyche_sse.sentiment import SentimentScores
from psyche_sse.store import Store, queries
from psyche_sse.store.connection import Connection
from tests import factories as f
from tests.factories import AGENT_IDS

BASE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def stamp(minutes: int) -> str:
    return (BASE + timedelta(minutes=minutes)).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Seeded:
    id: str
    title: str
    situation: str
    updated: str


def _turn(
    conn: Connection,
    *,
    session: str,
    round_id: str,
    position: int,
    text: str,
    when: str,
    running: bool,
) -> None:
    turn_id = f"{round_id}t{position}"
    agent = AGENT_IDS[position]
    where = {"session": session, "round_id": round_id}
    started = f.started(turn_id, agent, **where)
    queries.insert_turn(conn, replace(started, timestamp=when), position=position)
    if running:
        queries.save_partial(conn, turn_id=turn_id, text=text, streaming="native")
        return
    sentiment = SentimentScores(score=0.1, label="positive")
    complete = f.complete(
        text, turn_id, agent=agent, sentiment=sentiment, first_token_ms=40, **where
    )
    queries.finish_turn(conn, replace(complete, timestamp=when))


def _session(
    conn: Connection, n: int, situation: str, *, interrupted: bool = False, rounds: int = 1
) -> Seeded:
    session = f"seed{n:04d}"
    created = stamp(n)
    queries.reserve_ids(conn, session_id=session, ceiling=1000, title="", now=created)
    for index in range(1, rounds + 1):
        round_id = f"{session}r{index}"
        text = situation if index == 1 else f"{situation} (round {index})"
        started = f.round_started(session, round_id, text, index)
        queries.insert_round(conn, replace(started, timestamp=created))
        last = interrupted and index == rounds
        count = 2 if last else 5
        for position in range(count):
            running = last and position == count - 1
            text = (
                f"{AGENT_IDS[position]} was half way through a thought about {situation}"
                if running
                else f"{AGENT_IDS[position]} answers {situation}."
            )
            _turn(
                conn,
                session=session,
                round_id=round_id,
                position=position,
                text=text,
                when=created,
                running=running,
            )
        if not last:
            complete = f.round_complete(session, round_id, index=index, duration_ms=6000)
            queries.finish_round(conn, replace(complete, timestamp=created))
    # The title is the first situation, as the recorder stores it.
    queries.rename_session(conn, session_id=session, title=" ".join(situation.split())[:80])
    queries.touch_session(conn, session_id=session, updated=created)
    return Seeded(session, " ".join(situation.split())[:80], situation, created)


def seed(db: Path, count: int, *, interrupted: tuple[int, ...] = ()) -> list[Seeded]:
    """``count`` sessions, session ``n`` last active ``n`` minutes after :data:`BASE`; the
    ones in ``interrupted`` have a second round a crash cut off in Persona's turn."""

    def write(conn: Connection) -> list[Seeded]:
        out = []
        for n in range(count):
            situation = f"Situation {n} <b>bold</b> & more"
            rounds = 2 if n in interrupted else 1
            out.append(_session(conn, n, situation, interrupted=n in interrupted, rounds=rounds))
        return out

    store = Store.open(db)
    try:
        return store.write_now(write)
    finally:
        store.close()
