"""Every SQL statement of the store, as plain functions of a connection.

They run in the store's worker threads, never on the event loop. Writes do not commit: the
caller groups them into one transaction. Each statement is written once, in the SQL that
SQLite and PostgreSQL both take (``?`` placeholders, ``ON CONFLICT``, ``CASE`` rather than
SQLite's two-argument ``max``, booleans as ``TRUE``/``FALSE`` or Python bools). A query
that cannot be written once (full-text search, say) branches on ``conn.dialect``.
"""

from __future__ import annotations

import json
from typing import Any

from ..events import AgentComplete, AgentStarted, ConversationState, RoundComplete, RoundStarted
from ..plain import plain, unplain
from ..sentiment import SentimentScores
from ..transcript import Heard, Round, RoundState, Status, Transcript, Turn, base_situation
from .connection import Connection
from .records import CouncilMemory, Remembered, SessionSummary

RUNNING, INTERRUPTED = Status.RUNNING.value, Status.INTERRUPTED.value


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _unjson(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _state(text: str | None) -> RoundState | None:
    data = _unjson(text)
    return unplain(RoundState, data) if isinstance(data, dict) else None


def _sentiment(text: str | None) -> SentimentScores | None:
    data = _unjson(text)
    return SentimentScores(**data) if isinstance(data, dict) else None


# --- writes ------------------------------------------------------------------------------


def reserve_ids(
    conn: Connection,
    *,
    session_id: str,
    ceiling: int,
    title: str,
    now: str,
    owner: int | None = None,
) -> None:
    """Record that event ids up to ``ceiling`` may be published; creates the session row
    (owned by ``owner``: None for a session made with no accounts)."""
    conn.execute(
        "INSERT INTO sessions (id, title, created, updated, event_hwm, owner)"
        " VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET event_hwm = CASE"
        "  WHEN excluded.event_hwm > sessions.event_hwm THEN excluded.event_hwm"
        "  ELSE sessions.event_hwm END",
        (session_id, title, now, now, ceiling, owner),
    )


def release_ids(conn: Connection, *, session_id: str, reserved: int, last_id: int) -> None:
    """Give back the ids reserved above ``last_id``, the last one published, unless more
    were reserved since (the mark is no longer ``reserved``)."""
    conn.execute(
        "UPDATE sessions SET event_hwm = ? WHERE id = ? AND event_hwm = ? AND ? < ?",
        (last_id, session_id, reserved, last_id, reserved),
    )


def touch_session(
    conn: Connection, *, session_id: str, updated: str, saved_id: int | None = None
) -> None:
    """The session changed at ``updated``; everything up to event ``saved_id`` is saved."""
    if saved_id is None:
        conn.execute("UPDATE sessions SET updated = ? WHERE id = ?", (updated, session_id))
        return
    conn.execute(
        "UPDATE sessions SET updated = ?,"
        " saved_id = CASE WHEN saved_id < ? THEN ? ELSE saved_id END WHERE id = ?",
        (updated, saved_id, saved_id, session_id),
    )


def insert_round(conn: Connection, started: RoundStarted) -> None:
    conn.execute(
        "INSERT INTO sessions (id, title, created, updated) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (id) DO NOTHING",
        (
            started.session_id,
            " ".join(started.situation.split())[:80],
            started.timestamp,
            started.timestamp,
        ),
    )
    conn.execute(
        "INSERT INTO rounds (id, session_id, idx, situation, stimulus, left_off, status, started,"
        " run_index, run_rounds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            started.round_id,
            started.session_id,
            started.index,
            started.situation,
            started.stimulus,
            started.left_off,
            RUNNING,
            started.timestamp,
            started.run_index,
            started.rounds,
        ),
    )


def finish_round(conn: Connection, complete: RoundComplete) -> None:
    conn.execute(
        "UPDATE rounds SET status = ?, finished = ?, duration_ms = ?, reason = ? WHERE id = ?",
        (
            complete.status.value,
            complete.timestamp,
            complete.duration_ms,
            complete.reason,
            complete.round_id,
        ),
    )


def save_state(conn: Connection, state: ConversationState) -> None:
    """The conversation's state after the round ``state.round_id``."""
    value = RoundState(metrics=state.metrics, guidance=state.guidance, emergency=state.emergency)
    conn.execute("UPDATE rounds SET state = ? WHERE id = ?", (_json(plain(value)), state.round_id))


def insert_turn(conn: Connection, started: AgentStarted, *, position: int) -> None:
    """The turn ``started``, the ``position``-th (from 0) of its round."""
    meta = started.metadata
    conn.execute(
        "INSERT INTO turns (id, round_id, session_id, position, agent_id, agent_type, status,"
        " model, interaction_count, has_memory, started, heard, guidance)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            meta.turn_id,
            started.round_id,
            started.session_id,
            position,
            started.agent_id,
            started.agent_type,
            RUNNING,
            meta.model,
            meta.interaction_count,
            meta.has_memory,
            started.timestamp,
            _json(plain(meta.heard)) if meta.heard else None,
            _json(list(meta.guidance)) if meta.guidance else None,
        ),
    )


def save_partial(conn: Connection, *, turn_id: str, text: str, streaming: str | None) -> None:
    # A turn another process marked interrupted while we were streaming it is running again.
    conn.execute(
        "UPDATE turns SET text = ?, streaming = coalesce(?, streaming), status = ?"
        " WHERE id = ? AND status IN (?, ?)",
        (text, streaming, RUNNING, turn_id, RUNNING, INTERRUPTED),
    )


def finish_turn(conn: Connection, complete: AgentComplete) -> None:
    meta = complete.metadata
    conn.execute(
        "UPDATE turns SET status = ?, text = ?, finished = ?, remembered = ?, reasoning = ?,"
        " sentiment = ?, model = coalesce(?, model), streaming = coalesce(?, streaming),"
        " usage = ?, cost_usd = ?, interaction_count = ?, has_memory = ?, duration_ms = ?,"
        " first_token_ms = ?, error = ?, error_class = ? WHERE id = ?",
        (
            meta.status.value,
            complete.final_content,
            complete.timestamp,
            meta.remembered,
            meta.reasoning,
            _json(plain(complete.sentiment)),
            meta.model,
            meta.streaming,
            _json(meta.usage),
            meta.cost_usd,
            meta.interaction_count,
            meta.has_memory,
            meta.duration_ms,
            meta.first_token_ms,
            meta.error,
            meta.error_class,
            meta.turn_id,
        ),
    )


def mark_interrupted(conn: Connection) -> tuple[int, int]:
    """Turns and rounds left running by a process that died: (turns, rounds) marked."""
    turns = conn.execute(
        "UPDATE turns SET status = ?, remembered = (text <> '') WHERE status = ?",
        (INTERRUPTED, RUNNING),
    ).rowcount
    rounds = conn.execute(
        "UPDATE rounds SET status = ? WHERE status = ?", (INTERRUPTED, RUNNING)
    ).rowcount
    return turns, rounds


def rename_session(conn: Connection, *, session_id: str, title: str) -> bool:
    cursor = conn.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, session_id))
    return cursor.rowcount > 0


def delete_session(conn: Connection, *, session_id: str) -> bool:
    """Delete the session with its rounds and turns (foreign keys cascade)."""
    cursor = conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
    return cursor.rowcount > 0


# --- reads -------------------------------------------------------------------------------


def _owned_by(owner: int | None) -> tuple[str, tuple[int, ...]]:
    """The WHERE clause of the sessions of ``owner`` (None: every session)."""
    return ("WHERE s.owner = ?", (owner,)) if owner is not None else ("", ())


def list_sessions(
    conn: Connection, *, limit: int = 50, offset: int = 0, owner: int | None = None
) -> list[SessionSummary]:
    """The sessions of ``owner`` (None: all), the most recently active first."""
    where, args = _owned_by(owner)
    rows = conn.execute(
        "SELECT s.id, s.title, s.created, s.updated,"
        " (SELECT count(*) FROM rounds r WHERE r.session_id = s.id),"
        " (SELECT r.status FROM rounds r WHERE r.session_id = s.id"
        "  ORDER BY r.idx DESC LIMIT 1)"
        f" FROM sessions s {where} ORDER BY s.updated DESC, s.id LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ).fetchall()
    return [
        SessionSummary(
            id=row[0],
            title=row[1],
            created=row[2],
            updated=row[3],
            rounds=row[4],
            last_status=None if row[5] is None else Status(row[5]),
        )
        for row in rows
    ]


def count_sessions(conn: Connection, *, owner: int | None = None) -> int:
    where, args = _owned_by(owner)
    return int(conn.execute(f"SELECT count(*) FROM sessions s {where}", args).fetchone()[0])


def transcript(
    conn: Connection, *, session_id: str, as_of: int | None = None, saved: bool = False
) -> Transcript | None:
    """The session's rounds and turns, or None. ``as_of``: the last event id it reflects
    (when not given: the stored high-water mark; with ``saved``, the last event the
    process running the session has saved everything up to)."""
    row = conn.execute(
        "SELECT id, title, created, updated, event_hwm, saved_id FROM sessions WHERE id = ?",
        (session_id,),
    ).fetchone()
    if row is None:
        return None
    turns: dict[str, list[Turn]] = {}
    for t in conn.execute(
        "SELECT round_id, id, agent_id, agent_type, status, text, started, finished, model,"
        " streaming, reasoning, sentiment, usage, interaction_count, has_memory, duration_ms,"
        " first_token_ms, error, error_class, heard, guidance, cost_usd FROM turns"
        " WHERE session_id = ?"
        " ORDER BY round_id, position",
        (session_id,),
    ):
        turns.setdefault(t[0], []).append(
            Turn(
                id=t[1],
                agent_id=t[2],
                agent_type=t[3],
                status=Status(t[4]),
                text=t[5],
                started=t[6],
                finished=t[7],
                model=t[8],
                streaming=t[9],
                reasoning=t[10],
                sentiment=_sentiment(t[11]),
                usage=_unjson(t[12]),
                interaction_count=t[13],
                has_memory=bool(t[14]),
                duration_ms=t[15],
                first_token_ms=t[16],
                error=t[17],
                error_class=t[18],
                heard=tuple(Heard(**h) for h in _unjson(t[19]) or ()),
                guidance=tuple(_unjson(t[20]) or ()),
                cost_usd=t[21],
            )
        )
    rounds = [
        Round(
            id=r[0],
            index=r[1],
            situation=r[2],
            stimulus=r[3],
            status=Status(r[4]),
            started=r[5],
            finished=r[6],
            duration_ms=r[7],
            turns=turns.get(r[0], []),
            left_off=r[8],
            state=_state(r[9]),
            run_index=r[10],
            run_rounds=r[11],
            reason=r[12],
        )
        for r in conn.execute(
            "SELECT id, idx, situation, stimulus, status, started, finished, duration_ms,"
            " left_off, state, run_index, run_rounds, reason FROM rounds WHERE session_id = ?"
            " ORDER BY idx, started",
            (session_id,),
        )
    ]
    return Transcript(
        id=row[0],
        title=row[1],
        created=row[2],
        updated=row[3],
        last_event_id=as_of if as_of is not None else row[5] if saved else row[4],
        rounds=rounds,
    )


def council_memory(conn: Connection, *, session_id: str, keep: int) -> CouncilMemory | None:
    """What a council needs to carry on: every remembered reply in order, with the text of
    the newest ``keep`` per agent."""
    row = conn.execute(
        "SELECT id, title, event_hwm, owner FROM sessions WHERE id = ?", (session_id,)
    ).fetchone()
    if row is None:
        return None
    rounds = conn.execute(
        "SELECT id, idx, situation, stimulus, left_off, state FROM rounds"
        " WHERE session_id = ? ORDER BY idx, started",
        (session_id,),
    ).fetchall()
    states = tuple((r[1], state) for r in rounds if (state := _state(r[5])) is not None)
    replies = tuple(
        Remembered(
            agent_id=r[0], length=r[1], sentiment=_sentiment(r[2]), situation=r[3], text=r[4]
        )
        for r in conn.execute(
            "SELECT agent_id, length(text), sentiment,"
            " CASE WHEN newest <= ? THEN situation END,"
            " CASE WHEN newest <= ? THEN text END"
            " FROM (SELECT t.agent_id, t.text, t.sentiment, r.situation, r.idx, t.position,"
            "   row_number() OVER ("
            "     PARTITION BY t.agent_id ORDER BY r.idx DESC, t.position DESC) AS newest"
            "   FROM turns t JOIN rounds r ON r.id = t.round_id"
            "   WHERE t.session_id = ? AND t.remembered) AS remembered"
            " ORDER BY idx, position",
            (keep, keep, session_id),
        )
    )
    spent = conn.execute(
        "SELECT sum(cost_usd) FROM turns WHERE session_id = ?", (session_id,)
    ).fetchone()[0]
    return CouncilMemory(
        id=row[0],
        title=row[1],
        event_hwm=row[2],
        round_ids=tuple(r[0] for r in rounds),
        replies=replies,
        states=states,
        base=base_situation(rounds[-1][2], rounds[-1][3], rounds[-1][4]) if rounds else None,
        spent_usd=None if spent is None else float(spent),
        owner=row[3],
    )
