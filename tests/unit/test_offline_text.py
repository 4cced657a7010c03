"""The offline model's writing reads its prompt back like a real model would."""

from __future__ import annotations

from psyche_sse.archetypes import BY_ID
from psyche_sse.llm.offline_text import compose, read_prompt, topic_of
from psyche_sse.prompts import build_messages


def view_for(agent: str, situation: str, **kw):  # type: ignore[no-untyped-def]
    return read_prompt(build_messages(BY_ID[agent], situation, **kw))  # type: ignore[arg-type]


def test_reads_agent_situation_others_and_memory() -> None:
    view = view_for(
        "Anima/Animus",
        "My sister stopped calling me.",
        others=[("Ego", "Call her this week. Ask what changed.")],
        memory=[("before", "I felt it")],
    )
    assert view.agent_id == "Anima/Animus"
    assert view.situation == "My sister stopped calling me."
    assert view.others == [("Ego", "Call her this week. Ask what changed.")]
    assert len(view.memory) == 1


def test_topic_is_second_person() -> None:
    assert topic_of("I was passed over for promotion. It hurts.") == (
        "how you were passed over for promotion"
    )
    assert topic_of("My boss yelled at me") == "'your boss yelled at you'"


def test_reply_reflects_situation_and_quotes_another_agent() -> None:
    view = view_for(
        "Ego",
        "I was passed over for promotion",
        others=[("Self", "You are larger than the role you did not get.")],
    )
    text = compose(view, seed=1)
    assert "passed over for promotion" in text
    assert "Self" in text and text.rstrip().endswith("?")
    assert 30 <= len(text.split()) <= 140


def test_varies_with_seed_and_agent_but_is_repeatable() -> None:
    view = view_for("Shadow", "I was passed over for promotion")
    replies = {compose(view, seed=s) for s in range(8)}
    assert len(replies) > 3
    assert compose(view, seed=3) == compose(view, seed=3)
    assert compose(view_for("Persona", "I was passed over for promotion"), seed=3) != compose(
        view, seed=3
    )
