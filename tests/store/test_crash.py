"""A real crash: SIGKILL a process in the middle of a turn, then open its database again."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from functools import partial

import anyio
import pytest
from tests.databases import Database, settings_for, target
from tests.saved import saved_partial

from psyche_sse.engine import Engine
from psyche_sse.store import Store, queries
from psyche_sse.transcript import Status

INTERRUPTED = Status.INTERRUPTED

SERVER = """
import sys
import anyio
from psyche_sse.config import Settings
from psyche_sse.engine import Engine

async def main() -> None:
    where = sys.argv[1]
    if where.startswith("postgresql://"):
        settings = Settings(offline_tps=20, database_url=where)
    else:
        settings = Settings(offline_tps=20, db=where)
    async with Engine(settings, save_interval=0.1) as engine:
        session, _ = engine.rounds.start("I keep putting off a hard conversation")
        print(session.id, flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


def crash(db: Database) -> tuple[str, str]:
    """Start a round in a process, SIGKILL it once a partial text is saved: (session, text)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, target(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        session_id = proc.stdout.readline().strip()
        assert session_id, "the process did not start"
        deadline = time.monotonic() + 30
        while (seen := saved_partial(db)) is None:
            assert proc.poll() is None, "the process died on its own"
            assert time.monotonic() < deadline, "no partial text was saved"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return session_id, seen


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_killed_turn_is_interrupted_with_its_text_and_the_session_goes_on(
    db: Database,
) -> None:
    session_id, seen = await anyio.to_thread.run_sync(crash, db)

    async with await Store.aopen(db) as store:  # what a restart does first
        transcript = await store.run(partial(queries.transcript, session_id=session_id))
    assert transcript is not None
    (rnd,) = transcript.rounds
    assert rnd.status == INTERRUPTED
    (turn,) = rnd.turns
    assert turn.status == INTERRUPTED and turn.agent_id == "Shadow"
    assert turn.text.startswith(seen)  # saved text only grows

    # The interrupted reply is in Shadow's memory, and event ids go on after the old ones.
    async with Engine(settings_for(db, offline_tps=0)) as engine:
        session = await engine.live.load(session_id)
        shadow = session.council.agents["Shadow"]
        assert list(shadow.memory) == [(rnd.situation, turn.text)]
        assert shadow.interaction_count == 1
        session, round_id, text = engine.rounds.prepare("And now?", session_id)
        await engine.rounds.run(session, round_id, text)
        events = await engine.bus.history(session_id)
    assert events[0].id > transcript.last_event_id
    assert next(e for e in events if e.type == "round_started").data["index"] == 2
    assert next(e for e in events if e.type == "agent_processing_started").data["metadata"][
        "has_memory"
    ]
