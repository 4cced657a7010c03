"""A run of several rounds on the offline model: the conversation's state after each round,
emergency mode and the paths it opens, guidance, stimuli, and the situation moving on."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import pytest

from psyche_sse.config import Settings
from psyche_sse.council import EMERGENCY_PATHS
from psyche_sse.engine import Engine
from psyche_sse.events import (
    AgentComplete,
    AgentStarted,
    ConversationState,
    EmergencyStatus,
    Event,
    NetworkUpdate,
    RoundComplete,
    RoundStarted,
    StimulusInjected,
)
from psyche_sse.state import EMERGENCY_OFF, EMERGENCY_ON, EmergencyMode, Said, guidance, measure
from psyche_sse.transcript import PathKind
from tests.factories import AGENT_IDS

pytestmark = pytest.mark.anyio

SITUATION = "I was passed over for promotion and my manager took credit for my work"
STIMULUS = "My manager asked to meet me tomorrow morning"


async def run(tmp_path: Path, rounds: int, **kw: object) -> list[Event]:
    settings = Settings(offline_tps=0, db=tmp_path / "psyche.db")
    async with Engine(settings) as engine:
        session, round_id, text = engine.rounds.prepare(SITUATION)
        await engine.rounds.run(session, round_id, text, rounds=rounds, **kw)  # type: ignore[arg-type]
        return await engine.bus.history(session.id)


def of(events: list[Event], kind: type) -> list:  # type: ignore[type-arg]
    return [e.payload for e in events if isinstance(e.payload, kind)]


async def test_six_rounds_follow_the_rules(tmp_path: Path) -> None:
    # Seed 3: emergency mode comes on after round 1 and goes off after round 3.
    events = await run(tmp_path, 6, seed=3, scheduled={3: [STIMULUS]})
    payloads = [e.payload for e in events]
    states: list[ConversationState] = of(events, ConversationState)
    starts: list[RoundStarted] = of(events, RoundStarted)
    assert [s.round for s in states] == [1, 2, 3, 4, 5, 6]
    assert [(r.index, r.run_index, r.rounds) for r in starts] == [(i, i, 6) for i in range(1, 7)]

    # Each round ends with its state, measured on that round's replies.
    mode = EmergencyMode()
    expected_guidance: tuple[str, ...] = ()
    switches = []
    for state in states:
        replies = [
            p for p in payloads if isinstance(p, AgentComplete) and p.round_id == state.round_id
        ]
        assert [p.agent_id for p in replies] == list(AGENT_IDS)
        assert all(p.status == "ok" for p in replies)
        said = [Said(p.final_content, p.sentiment.score) for p in replies]
        # The scores are rounded to 4 places in the events: the metrics agree to that.
        expected = measure(said)
        for name in ("conflict", "engagement", "diversity", "repetition", "stagnation"):
            assert getattr(state.metrics, name) == pytest.approx(
                getattr(expected, name), abs=1e-3
            ), name
        assert state.guidance == guidance(state.metrics)
        # The turns of this round were given the guidance of the round before.
        for p in payloads:
            if isinstance(p, AgentStarted) and p.round_id == state.round_id:
                assert p.metadata.guidance == expected_guidance
        expected_guidance = state.guidance
        # Emergency mode by the rules, from the published stagnation.
        mode, switch = mode.step(state.metrics.stagnation, state.round)
        assert state.emergency == mode.active
        if switch is not None:
            switches.append((switch.round, switch.active))
        # A round's last event is its state.
        last = max(
            i for i, p in enumerate(payloads) if getattr(p, "round_id", None) == state.round_id
        )
        assert payloads[last] is state

    # Emergency switches: as the rules say, each with a network update after it.
    published = [(s.round, s.active) for s in of(events, EmergencyStatus)]
    assert published == switches
    assert switches == [(1, True), (3, False)]
    for status in of(events, EmergencyStatus):
        assert (
            status.stagnation > EMERGENCY_ON if status.active else status.stagnation < EMERGENCY_OFF
        )
        i = payloads.index(status)
        network = payloads[i + 1]
        assert isinstance(network, NetworkUpdate)
        emergency = [p for p in network.paths if p.kind is PathKind.EMERGENCY]
        assert len(emergency) == len(EMERGENCY_PATHS)
        assert all(p.active == status.active for p in emergency)
    updates: list[NetworkUpdate] = of(events, NetworkUpdate)
    assert isinstance(payloads[0], NetworkUpdate)  # a run opens with who hears whom
    assert len(updates) == 1 + len(switches)

    # While emergency mode is on, agents hear along emergency paths.
    on_during = {s.round + 1 for s in states if s.emergency}
    for p in payloads:
        if isinstance(p, AgentStarted):
            index = next(r.index for r in starts if r.round_id == p.round_id)
            kinds = {h.emergency for h in p.metadata.heard}
            if index not in on_during:
                assert kinds <= {False}

    # The stimulus: announced before round 3, which opens with it.
    [injected] = of(events, StimulusInjected)
    assert injected.round == 3 and injected.text == STIMULUS
    third = starts[2]
    assert third.stimulus == STIMULUS and third.situation.startswith(STIMULUS + "\n\n")
    assert payloads.index(injected) < payloads.index(third)
    assert injected.round_id == third.round_id  # told the id of the round it opens
    # The situation moves on: from round 2, where Ego left it.
    assert starts[0].left_off is None and SITUATION in starts[0].situation
    for later in starts[1:]:
        assert later.left_off and later.left_off.startswith("Ego closed the last round with")
        assert later.situation.endswith(later.left_off)
    assert len({s.situation for s in starts}) > 1


async def test_a_stopped_round_ends_the_run_with_its_state(tmp_path: Path) -> None:
    settings = Settings(offline_tps=200, db=tmp_path / "psyche.db")
    async with Engine(settings) as engine, anyio.create_task_group() as tg:
        session, round_id, text = engine.rounds.prepare(SITUATION)
        tg.start_soon(partial(engine.rounds.run, session, round_id, text, rounds=5))
        with anyio.fail_after(30):
            async for batch in engine.bus.subscribe(session.id):
                if any(isinstance(e.payload, AgentComplete) for e in batch):
                    await engine.rounds.stop(session.id)
                    break
        with anyio.fail_after(30):
            await session.finished.wait()  # type: ignore[union-attr]
        events = await engine.bus.history(session.id)
    completes: list[RoundComplete] = of(events, RoundComplete)
    assert len(completes) == 1 and completes[0].status == "cancelled"
    assert completes[0].ends_run and completes[0].rounds == 5
    assert isinstance(events[-1].payload, ConversationState)
