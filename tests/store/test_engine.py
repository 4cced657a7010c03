"""The engine records real offline rounds, and carries a session on after a restart."""

from __future__ import annotations

import anyio
import pytest
from tests.databases import Database, settings_for
from tests.factories import AGENT_IDS

from psyche_sse.config import Settings
from psyche_sse.engine import Engine
from psyche_sse.errors import SessionNotFound, TooManyRounds
from psyche_sse.events import Event
from psyche_sse.store import queries

pytestmark = pytest.mark.anyio


async def run(engine: Engine, situation: str, session_id: str | None = None, **kw: int) -> str:
    session, round_id, text = engine.rounds.prepare(situation, session_id)
    await engine.rounds.run(session, round_id, text, **kw)
    return session.id


def finals(events: list[Event]) -> dict[str, str]:
    return {
        e.data["metadata"]["turn_id"]: e.data["final_content"]
        for e in events
        if e.type == "agent_processing_complete"
    }


async def wait_for(engine: Engine, session_id: str, kind: str) -> None:
    with anyio.fail_after(20):
        async for batch in engine.bus.subscribe(session_id):
            if any(e.type == kind for e in batch):
                return


async def test_a_round_is_recorded_as_it_was_streamed(settings: Settings) -> None:
    async with Engine(settings) as engine:
        sid = await run(engine, "I was passed over for promotion\nagain", rounds=2)
        events = await engine.bus.history(sid)
        transcript = await engine.archive.transcript(sid)
    assert transcript.title == "I was passed over for promotion again"
    assert transcript.last_event_id == events[-1].id
    assert [r.index for r in transcript.rounds] == [1, 2]
    assert all(r.status == "ok" and r.duration_ms is not None for r in transcript.rounds)
    turns = [t for r in transcript.rounds for t in r.turns]
    assert [t.agent_id for t in turns] == list(AGENT_IDS) * 2
    assert {t.id: t.text for t in turns} == finals(events)
    assert all(t.status == "ok" and t.streaming == "native" and t.usage for t in turns)
    assert [t.interaction_count for t in turns] == [1] * 5 + [2] * 5


async def test_partial_text_is_not_written_per_delta(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves = 0
    save_partial = queries.save_partial

    def counting(*args: object, **kw: object) -> None:
        nonlocal saves
        saves += 1
        save_partial(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(queries, "save_partial", counting)
    async with Engine(settings, save_interval=3600) as engine:
        sid = await run(engine, "I keep losing my keys")
        deltas = [e for e in await engine.bus.history(sid) if e.type == "agent_processing_update"]
    assert len(deltas) > 100
    assert saves <= 10  # at most one per wake of the writer, which turns start and end


async def test_sessions_running_at_once_are_all_recorded(settings: Settings) -> None:
    async with Engine(settings) as engine:
        sessions = [engine.rounds.start(f"Situation number {n}")[0] for n in range(4)]
        for session in sessions:
            await wait_for(engine, session.id, "round_complete")
        listed = await engine.archive.list()
        assert await engine.archive.count() == 4
        for session in sessions:
            transcript = await engine.archive.transcript(session.id)
            turns = {t.id: t.text for r in transcript.rounds for t in r.turns}
            assert turns == finals(await engine.bus.history(session.id))
    assert {s.id for s in listed} == {s.id for s in sessions}
    assert all(s.rounds == 1 and s.last_status == "ok" for s in listed)


async def test_a_live_transcript_joins_the_stream_without_gap_or_duplicate(db: Database) -> None:
    async with Engine(settings_for(db, offline_tps=100), save_interval=0.05) as engine:
        session, _ = engine.rounds.start("My sister borrowed money and never paid it back")
        await wait_for(engine, session.id, "agent_processing_update")
        snapshot = await engine.archive.transcript(session.id)
        with anyio.fail_after(10):  # a few deltas after the snapshot, then stop
            async for batch in engine.bus.subscribe(session.id, snapshot.last_event_id):
                if batch[-1].id >= snapshot.last_event_id + 3:
                    break
        await engine.rounds.stop(session.id)
        await wait_for(engine, session.id, "round_complete")
        after = await engine.bus.history(session.id, snapshot.last_event_id)
        everything = await engine.bus.history(session.id)

    text = {t.id: t.text for r in snapshot.rounds for t in r.turns}
    assert [t.status for r in snapshot.rounds for t in r.turns] == ["running"]
    for e in after:
        if e.type == "agent_processing_update":
            text[e.data["metadata"]["turn_id"]] += e.data["partial_content"]
    assert text == finals(everything)


async def test_a_restarted_engine_carries_the_session_on(settings: Settings) -> None:
    situation = "I moved to a new city and know nobody"
    async with Engine(settings) as engine:
        sid = await run(engine, situation, seed=7)
        before = engine.live.by_id[sid]
        memory = {a: list(s.memory) for a, s in before.council.agents.items()}
        lengths = {a: s.lengths.average for a, s in before.council.agents.items()}
        latest = dict(before.council.latest)
        last_id = await engine.bus.last_id(sid)
    # The same two rounds without a restart, for comparison.
    async with Engine(settings) as engine:
        continuous = await run(engine, situation, seed=7)
        await run(engine, situation, continuous, seed=7)
        expected = [e for e in await engine.bus.history(continuous) if e.data["round_id"]]

    async with Engine(settings) as engine:
        with pytest.raises(SessionNotFound):
            engine.live.find("no-such-session")
        session = engine.live.find(sid)
        agents = session.council.agents
        assert {a: list(s.memory) for a, s in agents.items()} == memory
        assert {a: s.lengths.average for a, s in agents.items()} == pytest.approx(lengths)
        assert {a: s.interaction_count for a, s in agents.items()} == dict.fromkeys(AGENT_IDS, 1)
        assert session.council.latest == latest
        assert session.title == situation and len(session.rounds) == 1

        await run(engine, situation, sid, seed=7)
        events = await engine.bus.history(sid)
        transcript = await engine.archive.transcript(sid)

    assert events[0].id > last_id  # numbering goes on after the restart
    starts = [e.data["metadata"] for e in events if e.type == "agent_processing_started"]
    assert [(m["interaction_count"], m["has_memory"]) for m in starts] == [(1, True)] * 5
    # Same memory, same seed: the second round says what it would have said without a restart.
    second = [e for e in expected if e.type == "agent_processing_complete"][5:]
    assert [e.data["final_content"] for e in second] == list(finals(events).values())
    assert [r.index for r in transcript.rounds] == [1, 2]


async def test_load_session_rename_and_delete(settings: Settings) -> None:
    async with Engine(settings) as engine:
        sid = await run(engine, "I was not invited to the wedding")
    async with Engine(settings) as engine:
        session = await engine.live.load(sid)
        assert await engine.live.load(sid) is session
        assert await engine.archive.rename(sid, "  The   wedding ") == "The wedding"
        assert session.title == "The wedding"
        assert (await engine.archive.list())[0].title == "The wedding"
        await engine.archive.delete(sid)
        assert sid not in engine.live.by_id
        with pytest.raises(SessionNotFound):
            await engine.archive.transcript(sid)
        with pytest.raises(SessionNotFound):
            await engine.archive.delete(sid)
        with pytest.raises(SessionNotFound):
            await engine.archive.rename(sid, "x")
    async with Engine(settings) as engine:
        with pytest.raises(SessionNotFound):
            engine.live.find(sid)


async def test_deleting_a_running_session_stops_its_round(db: Database) -> None:
    async with Engine(settings_for(db, offline_tps=50)) as engine:
        session, _ = engine.rounds.start("I am anxious about an exam")
        await wait_for(engine, session.id, "agent_processing_update")
        await engine.archive.delete(session.id)
        assert not session.running
        assert await engine.archive.count() == 0


async def test_stopping_saves_the_partial_text(db: Database) -> None:
    async with Engine(settings_for(db, offline_tps=50), save_interval=3600) as engine:
        session, _ = engine.rounds.start("I am anxious about an exam")
        await wait_for(engine, session.id, "agent_processing_update")
        # Leaving the engine stops the round; the stopped turn's text is saved on the way out.
    async with Engine(settings_for(db)) as engine:
        transcript = await engine.archive.transcript(session.id)
    (rnd,) = transcript.rounds
    (turn,) = rnd.turns
    assert rnd.status == turn.status == "cancelled"
    assert turn.text and not turn.text.startswith("[")


async def test_the_cap_on_running_rounds_counts_rounds_not_yet_started(db: Database) -> None:
    # Three requests in one burst: the rounds' tasks have not run yet when the third asks.
    settings = settings_for(db, offline_tps=0, max_running_rounds=2)
    async with Engine(settings) as engine:
        first, _ = engine.rounds.start("One")
        engine.rounds.start("Two")
        with pytest.raises(TooManyRounds):
            engine.rounds.start("Three")
        await engine.rounds.stop(first.id)
        assert first.finished is not None
        with anyio.fail_after(10):
            await first.finished.wait()
        engine.rounds.start("Three, once one has ended")
        assert engine.live.running == 2
        for session in list(engine.live.by_id.values()):
            await engine.rounds.stop(session.id)


async def test_an_idle_session_leaves_memory_and_numbers_on_when_it_comes_back(
    settings: Settings,
) -> None:
    async with Engine(settings) as engine:
        sid = await run(engine, "Gone for a while")
        last = await engine.bus.last_id(sid)
        assert await engine.live.evict_idle(0) == 0  # seen idle once: not yet
        assert await engine.live.evict_idle(0) == 1
        assert sid not in engine.live.by_id and await engine.bus.history(sid) == []
        assert (await engine.archive.transcript(sid)).last_event_id == last
        await run(engine, "Back again", sid)
        events = await engine.bus.history(sid)
    assert (
        events[0].id == last + 1
        and next(e for e in events if e.type == "round_started").data["index"] == 2
    )
