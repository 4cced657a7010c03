"""A database written before a server starts: sessions with known titles, times and states.

Faster than running rounds through a server, and exact: the tests know what the list must
show and in which order. A round left ``running`` here is what a crashed process leaves;
the server marks it interrupted when it opens the database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psyche_sse.store import Store, queries
from tests.agents import AGENT_IDS

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
    conn: sqlite3.Connection,
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
    queries.insert_turn(
        conn,
        turn_id=turn_id,
        round_id=round_id,
        session_id=session,
        position=position,
        agent_id=agent,
        agent_type=agent.replace("/", "") + "Agent",
        model="psyche/offline",
        interaction_count=0,
        has_memory=False,
        started=when,
    )
    if running:
        queries.save_partial(conn, turn_id=turn_id, text=text, streaming="native")
        return
    queries.finish_turn(
        conn,
        turn_id=turn_id,
        status="ok",
        text=text,
        finished=when,
        remembered=True,
        sentiment={"score": 0.1, "label": "positive", "subjectivity": 0.5},
        model="psyche/offline",
        streaming="native",
        interaction_count=1,
        duration_ms=1200,
        first_token_ms=40,
    )


def _session(
    conn: sqlite3.Connection, n: int, situation: str, *, interrupted: bool = False, rounds: int = 1
) -> Seeded:
    session = f"seed{n:04d}"
    created = stamp(n)
    queries.reserve_ids(conn, session_id=session, ceiling=1000, title="", now=created)
    for index in range(1, rounds + 1):
        round_id = f"{session}r{index}"
        queries.insert_round(
            conn,
            session_id=session,
            round_id=round_id,
            index=index,
            situation=situation if index == 1 else f"{situation} (round {index})",
            stimulus=None,
            started=created,
        )
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
            queries.finish_round(
                conn,
                round_id=round_id,
                status="ok",
                finished=created,
                duration_ms=6000,
            )
    # The title is the first situation, as the recorder stores it.
    queries.rename_session(conn, session_id=session, title=" ".join(situation.split())[:80])
    queries.touch_session(conn, session_id=session, updated=created)
    return Seeded(session, " ".join(situation.split())[:80], situation, created)


def seed(db: Path, count: int, *, interrupted: tuple[int, ...] = ()) -> list[Seeded]:
    """``count`` sessions, session ``n`` last active ``n`` minutes after :data:`BASE`; the
    ones in ``interrupted`` have a second round a crash cut off in Persona's turn."""

    def write(conn: sqlite3.Connection) -> list[Seeded]:
        out = []
        with conn:
            conn.execute("BEGIN")
            for n in range(count):
                situation = f"Situation {n} <b>bold</b> & more"
                rounds = 2 if n in interrupted else 1
                out.append(
                    _session(conn, n, situation, interrupted=n in interrupted, rounds=rounds)
                )
        return out

    store = Store.open(db)
    try:
        return store.run_blocking(write)
    finally:
        store.close()
