"""Whole rounds through LiteLLM with the embedded offline model, no network."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import anyio
import pytest

from psyche_sse.config import Settings
from psyche_sse.engine import Engine
from psyche_sse.events import Event
from tests.factories import AGENT_IDS

pytestmark = pytest.mark.anyio


def check_protocol(events: list[Event]) -> dict[str, dict[str, Any]]:
    """Every started has exactly one complete; text and progress add up. Returns turns."""
    turns: dict[str, dict[str, Any]] = {}
    text: dict[str, str] = defaultdict(str)
    last_progress: dict[str, float] = defaultdict(float)
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), "ids strictly increase"
    for e in events:
        d = e.data
        assert d["session_id"] and d["round_id"]
        if e.type == "agent_processing_started":
            turns[d["metadata"]["turn_id"]] = {"agent": d["agent_id"], "complete": 0}
        elif e.type == "agent_processing_update":
            tid = d["metadata"]["turn_id"]
            assert turns[tid]["complete"] == 0
            text[tid] += d["partial_content"]
            assert d["progress"] >= last_progress[tid]
            last_progress[tid] = d["progress"]
            assert 0 <= d["progress"] < 1
        elif e.type == "agent_processing_complete":
            tid = d["metadata"]["turn_id"]
            turns[tid]["complete"] += 1
            turns[tid]["status"] = d["metadata"]["status"]
            turns[tid]["final"] = d["final_content"]
            turns[tid]["meta"] = d["metadata"]
            if d["metadata"]["status"] == "ok":
                assert d["final_content"] == text[tid]
            assert d["metadata"]["progress"] == 1.0
    assert all(t["complete"] == 1 for t in turns.values())
    return turns


async def run(settings: Settings, situation: str, **kw: Any) -> tuple[Engine, list[Event]]:
    async with Engine(settings) as engine:
        session, round_id, text = engine.rounds.prepare(situation)
        await engine.rounds.run(session, round_id, text, **kw)
        return engine, await engine.bus.history(session.id)


async def test_a_round_streams_five_turns_in_order() -> None:
    _, events = await run(Settings(offline_tps=0), "I was passed over for promotion")
    # A run opens with who hears whom; a round ends with the conversation's state.
    kinds = [e.type for e in events]
    assert kinds[:2] == ["network_update", "round_started"]
    assert kinds[-1] == "conversation_state" and "round_complete" in kinds[-4:]
    turns = check_protocol(events)
    assert [t["agent"] for t in turns.values()] == list(AGENT_IDS)
    for t in turns.values():
        assert t["status"] == "ok" and t["meta"]["streaming"] == "native"
        assert t["meta"]["model"] == "psyche/offline" and t["meta"]["usage"]
        assert t["meta"]["first_token_ms"] is not None
    updates = [e for e in events if e.type == "agent_processing_update"]
    assert len(updates) > 100  # token by token


async def test_non_streaming_model_is_streamed_by_simulation() -> None:
    settings = Settings(model="psyche/offline-nostream", simulated_delay=0.001)
    _, events = await run(settings, "My friend forgot my birthday")
    turns = check_protocol(events)
    assert {t["meta"]["streaming"] for t in turns.values()} == {"simulated"}
    per_turn = defaultdict(int)
    for e in events:
        if e.type == "agent_processing_update":
            per_turn[e.data["metadata"]["turn_id"]] += 1
    assert all(8 <= n <= 12 for n in per_turn.values())  # about ten chunks


async def test_memory_and_interaction_counts_carry_across_rounds() -> None:
    _, events = await run(Settings(offline_tps=0), "I moved to a new city", rounds=2)
    starts = [e.data for e in events if e.type == "agent_processing_started"]
    assert [s["metadata"]["interaction_count"] for s in starts] == [0] * 5 + [1] * 5
    assert [s["metadata"]["has_memory"] for s in starts] == [False] * 5 + [True] * 5
    assert len({e.data["round_id"] for e in events}) == 2
    # Ego hears Persona, Anima/Animus and Self: their words are quoted back.
    check_protocol(events)


async def test_stop_round_completes_the_current_turn_as_cancelled() -> None:
    async with Engine(Settings(offline_tps=50)) as engine:
        session, _ = engine.rounds.start("I am anxious about an exam")
        with anyio.fail_after(10):
            async for batch in engine.bus.subscribe(session.id):
                if any(e.type == "agent_processing_update" for e in batch):
                    break
        assert await engine.rounds.stop(session.id)
        with anyio.fail_after(10):
            async for batch in engine.bus.subscribe(session.id):
                if any(e.type == "round_complete" for e in batch):
                    break
        events = await engine.bus.history(session.id)
    turns = check_protocol(events)
    assert [t["status"] for t in turns.values()] == ["cancelled"]
    [complete] = [e for e in events if e.type == "round_complete"]
    assert complete.data["status"] == "cancelled"
    assert events[-1].type == "conversation_state"
    assert not session.running


async def test_stop_one_turn_and_the_round_goes_on() -> None:
    # Slow enough that Shadow is still speaking when this reader, on a loaded machine, sees
    # its turn start (about a second a turn).
    async with Engine(Settings(offline_tps=60)) as engine:
        session, _ = engine.rounds.start("I am anxious about an exam")
        with anyio.fail_after(10):
            async for batch in engine.bus.subscribe(session.id):
                started = [e for e in batch if e.type == "agent_processing_started"]
                if started:
                    turn_id = started[0].data["metadata"]["turn_id"]
                    assert await engine.rounds.stop(session.id, turn_id)
                    break
        with anyio.fail_after(20):
            async for batch in engine.bus.subscribe(session.id):
                if any(e.type == "round_complete" for e in batch):
                    break
        events = await engine.bus.history(session.id)
    turns = check_protocol(events)
    assert [t["status"] for t in turns.values()] == ["cancelled", "ok", "ok", "ok", "ok"]
