"""The offline model's writing reads its prompt back like a real model would."""

from __future__ import annotations

import re
from statistics import mean

import pytest
from tests.factories import AGENT_IDS

from psyche_sse.archetypes import BY_ID
from psyche_sse.llm.offline_text import (
    PromptView,
    compose,
    read_prompt,
    second_person,
    themes_of,
    topic_of,
)
from psyche_sse.prompts import build_messages

AGENTS = AGENT_IDS
SISTER = "My sister stopped calling me after our father's funeral"
PROMOTION = "I was passed over for promotion and my manager took credit"
ABROAD = "I can't decide whether to move abroad for a year"
CHILD = "My partner wants a child and I am not sure"
EXAM = "I failed my exam again"
SITUATIONS = (SISTER, PROMOTION, ABROAD, CHILD, EXAM)
WORK_WORDS = {
    *("job", "jobs", "work", "career", "promotion", "promoted", "boss", "manager", "colleague"),
    *("colleagues", "office", "role", "title", "professional", "professionally", "salary"),
    *("team", "reputation"),
}
# What other agents said, with the traps: quotations, a quotation of a third agent, a quoted
# "we" that must stay "we", and a question.
OTHERS = (
    ("Self", 'Self is right that "I feel lost". You are more than this silence, and it shows.'),
    ("Ego", 'Shadow says "we need to talk"; fine. Write down what you want to say to her first.'),
    ("Persona", "We need to talk about how this looks. Who do you need to be seen as?"),
    ("Shadow", "Persona is right that 'the mask protects you'. Anger is information, not a flaw."),
)
GUIDANCE = {
    "conflict": "Conflict between the agents is high: acknowledge the others.",
    "engagement": "Engagement is low: answer more fully and concretely.",
    "repetition": "The council keeps repeating itself: say something it has not said.",
    "stagnation": "The conversation is stagnating: propose a different direction.",
    "intensity": "Emotional intensity is high: answer more calmly.",
}
MARKERS = {
    "conflict": ("common ground",),
    "engagement": ("tonight", "today", "tomorrow", "this evening", "this week"),
    "repetition": ("new angle", "something new"),
    "stagnation": ("bold", "propos"),
    "intensity": ("calm", "slow", "breathe", "quiet", "soft", "temperature", "heat"),
}


def view_for(agent: str, situation: str, **kw):  # type: ignore[no-untyped-def]
    return read_prompt(build_messages(BY_ID[agent], situation, **kw))  # type: ignore[arg-type]


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r'(?<=[.!?])"?\s+(?=[A-Z"])', text) if s]


def quoted_spans(text: str) -> list[str]:
    assert text.count('"') % 2 == 0, text
    return re.findall(r'"([^"]*)"', text)


# Reading the prompt back.


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


def test_reads_the_new_development_where_it_was_left_and_the_guidance() -> None:
    view = view_for(
        "Self",
        SISTER,
        stimulus="She just texted me.",
        left_off="Ego closed by asking what you will say first.",
        guidance=[GUIDANCE["conflict"], GUIDANCE["intensity"]],
    )
    assert view.situation == SISTER
    assert view.stimulus == "She just texted me."
    assert view.left_off == "Ego closed by asking what you will say first."
    assert view.guidance == [GUIDANCE["conflict"], GUIDANCE["intensity"]]
    assert view.guidance_kinds() == ("conflict", "intensity")


def test_the_closing_request_is_not_read_as_part_of_a_section() -> None:
    assert view_for("Ego", SISTER).situation == SISTER
    assert view_for("Ego", SISTER, left_off="We stopped at a question.").left_off == (
        "We stopped at a question."
    )
    assert view_for("Ego", SISTER, guidance=["Stay calm."]).guidance == ["Stay calm."]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("High conflict between Shadow and Persona", "conflict"),
        ("Engagement is low", "engagement"),
        ("Try to engage the person more directly", "engagement"),
        ("Avoid repeating earlier points", "repetition"),
        ("Repetition is high", "repetition"),
        ("The conversation is stagnant", "stagnation"),
        ("Stagnation: the council is going in circles", "stagnation"),
        ("Emotional intensity is very high", "intensity"),
        ("Keep your tone calm", "intensity"),
    ],
)
def test_guidance_lines_are_recognised_by_their_words(line: str, kind: str) -> None:
    assert PromptView(guidance=[line]).guidance_kinds() == (kind,)


# The situation, told back.


def test_topic_is_second_person_and_never_quoted() -> None:
    assert topic_of("I was passed over for promotion. It hurts.") == (
        "how you were passed over for promotion"
    )
    # Rewritten: the topic used to come back in quotation marks with its pronouns swapped
    # ("'your boss yelled at you'"), a misquotation. It is a paraphrase now, outside quotes.
    assert topic_of("My boss yelled at me") == "how your boss yelled at you"
    assert topic_of("Should I quit my job?") == "whether you should quit your job"
    assert topic_of("What do I do now?") == "what to do now"
    assert topic_of('My partner said "we need to talk"') == (
        "what is happening between you and your partner"
    )
    assert topic_of("Help me, please") == "what you are going through"


@pytest.mark.parametrize(
    ("situation", "topic"),
    [
        (SISTER, "how your sister stopped calling you after your father's funeral"),
        (PROMOTION, "how you were passed over for promotion and your manager took credit"),
        (ABROAD, "how you can't decide whether to move abroad for a year"),
        (CHILD, "how your partner wants a child and you are not sure"),
        (EXAM, "how you failed your exam again"),
    ],
)
def test_topic_reads_for_very_different_situations(situation: str, topic: str) -> None:
    assert topic_of(situation) == topic


def test_a_long_situation_is_cut_at_a_clause_boundary_or_named_by_its_theme() -> None:
    long = "My sister stopped calling me, and I keep checking my phone every hour of the day"
    assert topic_of(long) == "how your sister stopped calling you"
    rambling = " ".join(["My sister"] + ["really"] * 20 + ["stopped calling"])
    assert topic_of(rambling) == "what is happening with your sister"


def test_themes_come_from_the_situation_s_words() -> None:
    assert {t.name for t in themes_of(SISTER)} == {"family", "loss"}
    assert [t.name for t in themes_of(PROMOTION)] == ["work"]
    assert [t.name for t in themes_of(ABROAD)] == ["decision"]
    assert {t.name for t in themes_of(CHILD)} == {"partner", "decision"}
    assert [t.name for t in themes_of(EXAM)] == ["study"]
    assert themes_of("Everything feels grey lately") == ()


# What the reply says.


def replies(situation: str, seeds: range = range(30), **kw):  # type: ignore[no-untyped-def]
    for agent in AGENTS:
        for seed in seeds:
            yield agent, compose(view_for(agent, situation, **kw), seed=seed)


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


@pytest.mark.parametrize("situation", [SISTER, ABROAD, CHILD, EXAM])
def test_no_work_talk_unless_the_situation_is_about_work(situation: str) -> None:
    kinds = [{}, {"others": OTHERS[:2]}, *({"guidance": [g]} for g in GUIDANCE.values())]
    for kw in kinds:
        for agent, text in replies(situation, range(12), **kw):
            found = WORK_WORDS & set(words_of(text))
            assert not found, f"{agent} talks of {found} for {situation!r}: {text}"


def test_work_talk_when_the_situation_is_about_work() -> None:
    texts = [text for _, text in replies(PROMOTION, range(6))]
    assert sum(bool(WORK_WORDS & set(words_of(t))) for t in texts) > len(texts) // 2


def test_the_sister_situation_is_answered_about_family_and_grief() -> None:
    texts = [text for _, text in replies(SISTER, range(6))]
    family = {"sister", "family", "grief", "lost", "loss"}
    assert all(family & set(words_of(t)) for t in texts)


def test_quotes_are_verbatim_and_never_nested() -> None:
    quoted = 0
    for situation in SITUATIONS:
        for _, text in replies(situation, range(40), others=OTHERS):
            sources = [said for _, said in OTHERS]
            for span in quoted_spans(text):
                quoted += 1
                assert any(span.rstrip("\u2026") in said for said in sources), (span, text)
                assert not re.search(r"['\u2018\u2019\u201c\u201d]\W|\W['\u2018\u2019]", span)
                assert not re.search(r"\b(Shadow|Persona|Anima|Animus|Self|Ego)\b", span)
                assert "is right that" not in span and "says" not in span
            assert "is right that" not in text
            assert "you need to talk" not in text, text
    assert quoted > 100  # the quotes were there to check


def test_an_agent_with_nothing_quotable_is_named_not_misquoted() -> None:
    others = [("Self", 'Ego is right that "we need to talk". Shadow says "wait".')]
    for _, text in replies(SISTER, range(10), others=others):
        assert '"' not in text
    texts = [compose(view_for("Ego", SISTER, others=others), seed=s) for s in range(10)]
    assert all("Self" in t for t in texts)


def test_a_quote_is_a_whole_statement_not_the_situation_retold() -> None:
    others = [
        (
            "Anima/Animus",
            "When I sit with how your sister stopped calling you after your father's funeral, "
            "I feel a quieter current beneath your thoughts. Grief comes in waves, slowly.",
        )
    ]
    for _, text in replies(SISTER, range(10), others=others):
        assert quoted_spans(text) == ["Grief comes in waves, slowly"], text


def test_a_quoted_development_stays_as_the_person_wrote_it() -> None:
    stimulus = 'My partner said "we need to talk"'
    for _, text in replies(CHILD, range(10), stimulus=stimulus, others=OTHERS[:2]):
        spans = quoted_spans(text)
        assert "we need to talk" in spans, text
        assert all(s in stimulus or any(s in said for _, said in OTHERS[:2]) for s in spans)
        assert "you need to talk" not in text


@pytest.mark.parametrize(
    ("stimulus", "mention"),
    [
        ("My sister just texted me", "texted"),
        ("She wants to meet on Sunday", "sunday"),
        ("Should I answer her?", "answer"),
        ('She wrote "we need to talk"', "talk"),
        ("She said 'we need to talk' and left", "we need to talk"),
        ("Anna told me she misses our dad", "anna"),
    ],
)
def test_the_new_development_is_reacted_to_first(stimulus: str, mention: str) -> None:
    for agent, text in replies(SISTER, range(10), stimulus=stimulus, others=OTHERS[:1]):
        first_two = " ".join(sentences(text)[:2])
        assert mention in first_two.lower(), f"{agent}: {text}"


@pytest.mark.parametrize("kind", list(GUIDANCE))
def test_each_kind_of_guidance_changes_the_reply_visibly(kind: str) -> None:
    changed = 0
    for agent in AGENTS:
        for seed in range(10):
            kw = {"others": OTHERS[2:3], "memory": [(SISTER, "I said something before.")]}
            plain = compose(view_for(agent, SISTER, **kw), seed=seed)
            guided = compose(view_for(agent, SISTER, guidance=[GUIDANCE[kind]], **kw), seed=seed)
            assert any(m in guided.lower() for m in MARKERS[kind]), f"{agent}: {guided}"
            changed += guided != plain
    assert changed == 50


def test_low_engagement_gets_longer_replies_and_intensity_calmer_shorter_ones() -> None:
    def average(**kw: object) -> float:
        return mean(len(text.split()) for _, text in replies(EXAM, range(20), **kw))

    plain = average(others=OTHERS[:1])
    assert average(others=OTHERS[:1], guidance=[GUIDANCE["engagement"]]) > plain + 10
    assert average(others=OTHERS[:1], guidance=[GUIDANCE["intensity"]]) < plain + 10


def test_conflict_guidance_acknowledges_the_agent_it_quotes() -> None:
    for agent in AGENTS:
        view = view_for(agent, SISTER, others=OTHERS[2:3], guidance=[GUIDANCE["conflict"]])
        text = compose(view, seed=1)
        assert text.count("Persona") >= 2, text


# Shape, determinism and variety.


@pytest.mark.parametrize("situation", SITUATIONS)
def test_one_short_paragraph_in_the_first_person_ending_with_a_question(situation: str) -> None:
    kinds = [
        {},
        {"others": OTHERS},
        {"stimulus": "My sister just texted me", "others": OTHERS[:2]},
        {"left_off": "Ego asked what you will do first.", "memory": [(situation, "Before.")]},
        *({"guidance": [g], "others": OTHERS[:2]} for g in GUIDANCE.values()),
    ]
    for kw in kinds:
        for agent, text in replies(situation, range(8), **kw):
            n = len(text.split())
            assert 50 <= n <= 120, f"{agent} ({n} words): {text}"
            assert text.endswith("?") and "\n" not in text
            assert {"i", "me", "my"} & set(words_of(text))
            assert "you" in words_of(text)


def test_the_same_prompt_and_seed_give_the_same_text() -> None:
    kw = {"others": OTHERS, "stimulus": "She texted me", "guidance": [GUIDANCE["conflict"]]}
    for agent in AGENTS:
        assert compose(view_for(agent, SISTER, **kw), seed=7) == compose(
            view_for(agent, SISTER, **kw), seed=7
        )
    assert compose(view_for("Ego", SISTER)) == compose(view_for("Ego", SISTER))


@pytest.mark.parametrize("agent", AGENTS)
def test_replies_vary_across_seeds(agent: str) -> None:
    view = view_for(agent, SISTER, others=OTHERS[:2])
    texts = [compose(view, seed=s) for s in range(20)]
    assert len(set(texts)) >= 15
    assert len({len(t.split()) for t in texts}) >= 5  # lengths differ a little too


def test_varies_with_seed_and_agent_but_is_repeatable() -> None:
    view = view_for("Shadow", "I was passed over for promotion")
    replies_ = {compose(view, seed=s) for s in range(8)}
    assert len(replies_) > 3
    assert compose(view, seed=3) == compose(view, seed=3)
    assert compose(view_for("Persona", "I was passed over for promotion"), seed=3) != compose(
        view, seed=3
    )


@pytest.mark.parametrize("agent", AGENTS)
def test_later_rounds_say_new_things(agent: str) -> None:
    """Round after round, as the council runs it: the memory grows with this agent's own
    replies (clipped, as the prompt clips them); each round opens differently and shares at
    most one sentence with the round before."""
    memory: list[tuple[str, str]] = []
    openings: list[str] = []
    before: list[str] = []
    for round_ in range(5):
        view = view_for(
            agent,
            SISTER,
            memory=memory,
            others=OTHERS[round_ % 4 : round_ % 4 + 2],
            left_off="Ego closed with a question." if round_ else None,
        )
        text = compose(view, seed=None if agent == "Ego" else 40 + round_)
        own = [s for s in sentences(text) if '"' not in s]
        assert own[0] not in openings, f"round {round_} opens as before: {own[0]}"
        assert len([s for s in own if s in before]) <= 1, (before, own)
        openings.append(own[0])
        before = own
        memory.append((SISTER, text))


def test_reported_speech_in_a_stimulus_is_told_back_as_it_was_said() -> None:
    assert second_person("My sister texted: we need to talk") == (
        "your sister texted: we need to talk"
    )
    assert second_person("I told my boss: I quit") == "you told your boss: I quit"
