"""The council with replies it knows in advance (tests/fakes/llm.py): what each turn hears,
the guidance it is given, the state measured on exactly what was said, and a cut reply."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.factories import AGENT_IDS
from tests.fakes.llm import Cut, QueuedLLM

from psyche_sse.config import Settings
from psyche_sse.engine import Engine
from psyche_sse.errors import LLMError
from psyche_sse.events import AgentComplete, AgentStarted, ConversationState, Event, Payload
from psyche_sse.state import GUIDANCE_STAGNATION, Said, measure

pytestmark = pytest.mark.anyio

# Short replies: little engagement, so stagnation is high after round 1.
ROUND_ONE = {
    "Shadow": "You are angry and you know it.",
    "Persona": "People will see how you handle this.",
    "Anima/Animus": "I feel a longing under the anger.",
    "Self": "All of these voices belong to you.",
    "Ego": "What will you do first?",
}


async def run(tmp_path: Path, llm: QueuedLLM, rounds: int) -> list[Event]:
    async with Engine(Settings(db=tmp_path / "psyche.db"), llm=llm) as engine:  # type: ignore[arg-type]
        session, round_id, text = engine.rounds.prepare("I was passed over")
        await engine.rounds.run(session, round_id, text, rounds=rounds)
        return await engine.bus.history(session.id)


def payloads(events: list[Event], kind: type[Payload]) -> list[Payload]:
    return [e.payload for e in events if isinstance(e.payload, kind)]


async def test_each_turn_hears_its_paths_and_the_state_is_what_was_said(tmp_path: Path) -> None:
    llm = QueuedLLM()
    for agent, text in ROUND_ONE.items():
        llm.answer(agent, text, f"{agent} again, now with more to say.")
    events = await run(tmp_path, llm, rounds=2)

    started = payloads(events, AgentStarted)
    heard = {(p.round_id, p.agent_id): [h.agent_id for h in p.metadata.heard] for p in started}  # type: ignore[union-attr]
    first, second = dict.fromkeys(p.round_id for p in started)  # type: ignore[union-attr]
    # Round 1: each hears those who spoke before it, along the normal paths.
    assert heard[first, "Shadow"] == []
    assert heard[first, "Persona"] == ["Shadow"]
    assert heard[first, "Ego"] == ["Persona", "Anima/Animus", "Self"]
    # The prompts carry exactly what was heard.
    ego_prompt = llm.prompts["Ego"][0][1]["content"]
    assert ROUND_ONE["Self"] in ego_prompt and ROUND_ONE["Shadow"] not in ego_prompt

    [state_one, state_two] = payloads(events, ConversationState)
    said = [Said(text, 0.0) for text in ROUND_ONE.values()]
    scores = [p.sentiment.score for p in payloads(events, AgentComplete)][:5]  # type: ignore[union-attr]
    expected = measure([Said(s.text, score) for s, score in zip(said, scores, strict=True)])
    assert state_one.metrics == expected  # type: ignore[union-attr]
    assert state_one.emergency and GUIDANCE_STAGNATION in state_one.guidance  # type: ignore[union-attr]
    # Round 2: emergency paths open (Shadow now hears Anima/Animus and Ego), and every turn
    # is given the guidance round 1 called for.
    assert heard[second, "Shadow"] == ["Persona", "Anima/Animus", "Self", "Ego"]
    for p in started[5:]:
        assert p.metadata.guidance == state_one.guidance  # type: ignore[union-attr]
        assert "## Guidance" in llm.prompts[p.agent_id][1][1]["content"]  # type: ignore[union-attr]
    assert state_two.round == 2  # type: ignore[union-attr]


async def test_a_cut_reply_keeps_its_words_and_a_failure_does_not_stop_the_round(
    tmp_path: Path,
) -> None:
    llm = QueuedLLM()
    for agent in AGENT_IDS:
        llm.answer(agent, ROUND_ONE[agent])
    llm.queues["Persona"][0] = Cut("People will see")
    llm.queues["Self"][0] = LLMError("the provider said no", error_class="BadRequestError")
    events = await run(tmp_path, llm, rounds=1)
    finals = {p.agent_id: p for p in payloads(events, AgentComplete)}  # type: ignore[union-attr]
    persona, self_ = finals["Persona"], finals["Self"]
    assert persona.status == "error" and persona.metadata.partial  # type: ignore[union-attr]
    assert persona.final_content.startswith("People will see")  # type: ignore[union-attr]
    assert "cut off by the provider" in persona.final_content  # type: ignore[union-attr]
    assert persona.metadata.remembered  # its words join Persona's memory  # type: ignore[union-attr]
    assert self_.final_content == "[Self is experiencing technical difficulties]"  # type: ignore[union-attr]
    assert not self_.metadata.remembered  # type: ignore[union-attr]
    assert finals["Ego"].status == "ok"  # type: ignore[union-attr]
