"""Costs in the store: saved with each turn, summed for a restored session's budget, and a
database from before costs were kept reading back with no cost."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from tests import databases
from tests import factories as f
from tests.databases import Database

from psyche_sse.store import Store, queries, schema
from psyche_sse.store.connection import Connection
from psyche_sse.transcript import Status

NOW = "2025-01-01T00:00:00.000+00:00"


def cost_step() -> int:
    """The number of the migration step that adds the turns' costs."""
    [number] = [n for n, step in enumerate(schema.MIGRATIONS, 1) if "cost_usd" in step]
    return number


def _old_round(conn: Connection) -> None:
    queries.reserve_ids(conn, session_id="s", ceiling=1000, title="old", now=NOW)
    queries.insert_round(conn, replace(f.round_started("s", "r", "a situation"), timestamp=NOW))
    for n, agent in enumerate(("Shadow", "Persona")):
        started = f.started(f"t{n}", agent, session="s", round_id="r")
        queries.insert_turn(conn, replace(started, timestamp=NOW), position=n)
    # How that version finished a turn and a round (no cost, no reason).
    conn.execute(
        "UPDATE turns SET status = 'ok', text = 'said', finished = ?, remembered = TRUE,"
        ' usage = \'{"prompt_tokens": 10, "completion_tokens": 5}\'',
        (NOW,),
    )
    conn.execute("UPDATE rounds SET status = 'ok', finished = ?, duration_ms = 10", (NOW,))


def old_database(db: Database) -> None:
    """A database written before the cost step: a finished round of two turns."""
    databases.old_database(db, cost_step() - 1)
    databases.raw(db, _old_round, write=True)


def test_a_migrated_database_reads_old_turns_with_no_cost(db: Database) -> None:
    old_database(db)
    store = Store.open(db)
    try:
        transcript = store.run_blocking(partial(queries.transcript, session_id="s"))
        memory = store.run_blocking(partial(queries.council_memory, session_id="s", keep=5))
        version = store.run_blocking(schema.version)
    finally:
        store.close()
    assert version == schema.VERSION >= cost_step()
    assert transcript is not None and memory is not None
    [rnd] = transcript.rounds
    assert [(t.status, t.usage, t.cost_usd) for t in rnd.turns] == [
        (Status.OK, {"prompt_tokens": 10, "completion_tokens": 5}, None)
    ] * 2
    assert rnd.reason is None and rnd.cost_usd is None and transcript.cost_usd is None
    assert memory.spent_usd is None


def test_costs_and_a_stop_reason_are_saved_and_summed(db: Database) -> None:
    old_database(db)
    store = Store.open(db)

    def finish(conn: Connection) -> None:
        queries.insert_round(
            conn, replace(f.round_started("s", "r2", "a situation", index=2), timestamp=NOW)
        )
        for n, cost in enumerate((0.0025, None)):
            agent = ("Shadow", "Persona")[n]
            started = f.started(f"u{n}", agent, session="s", round_id="r2")
            queries.insert_turn(conn, replace(started, timestamp=NOW), position=n)
            queries.finish_turn(
                conn, f.complete("said", f"u{n}", agent=agent, round_id="r2", cost_usd=cost)
            )
        ended = replace(
            f.round_complete("s", "r2", index=2, status=Status.CANCELLED, turns=2),
            cost_usd=0.0025,
            reason="Anima/Animus's turn could cost $0.0100 and this session has …",
        )
        queries.finish_round(conn, ended)

    try:
        store.write_now(finish)
        transcript = store.run_blocking(partial(queries.transcript, session_id="s"))
        memory = store.run_blocking(partial(queries.council_memory, session_id="s", keep=5))
    finally:
        store.close()
    assert transcript is not None and memory is not None
    new = transcript.rounds[1]
    assert [t.cost_usd for t in new.turns] == [0.0025, None]
    assert new.reason is not None and new.reason.startswith("Anima/Animus's turn could cost")
    assert new.cost_usd == 0.0025 and transcript.cost_usd == 0.0025
    assert memory.spent_usd == 0.0025
