"""Fragments: every model and user string escaped, markdown sanitised, state folded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from psyche_sse.config import Settings
from psyche_sse.events import Event
from psyche_sse.sentiment import SentimentScores
from psyche_sse.transcript import Status, Transcript
from psyche_sse.web.markdown import MarkdownRenderer
from psyche_sse.web.render import Renderer
from tests import factories as f

SID, RID, TID = "s1", "r1", "t1"
EVIL = (
    "<img src=x onerror=alert(1)><script>alert(2)</script></hx-partial><hx-partial hx-target=body>"
)


@pytest.fixture
def renderer(tmp_path: Any) -> Renderer:
    return Renderer(Settings(db=tmp_path / "db"))


def round_started(situation: str = "Passed over") -> Event:
    return Event(1, f.round_started(SID, RID, situation=situation, agents=("Shadow",)))


def started() -> Event:
    return Event(2, f.started(TID, session=SID, round_id=RID))


def update(text: str, id: int = 3, progress: float = 0.5) -> Event:
    return Event(id, f.update(text, TID, progress, session=SID, round_id=RID))


def complete(text: str, status: Status = Status.OK, **meta: Any) -> Event:
    return Event(
        9,
        f.complete(
            text,
            TID,
            status=status,  # type: ignore[arg-type]
            session=SID,
            round_id=RID,
            sentiment=SentimentScores(score=-0.42, label="negative"),
            interaction_count=1,
            has_memory=True,
            usage={"completion_tokens": 12},
            duration_ms=2100,
            first_token_ms=45,
            **meta,
        ),
    )


def assert_inert(html: str) -> None:
    assert "<img" not in html
    assert "<script" not in html
    assert html.count("<hx-partial") == html.count("</hx-partial>")
    assert "<hx-partial hx-target=body" not in html


def test_a_delta_is_escaped_and_moves_the_bar(renderer: Renderer) -> None:
    html = str(renderer.event_html(update(EVIL)))
    assert_inert(html)
    assert '<hx-partial hx-target="#turn-t1-text" hx-swap="beforeend">&lt;img' in html
    assert 'id="turn-t1-bar"' in html
    assert "--progress: 50.0%" in html


def test_the_situation_is_shown_as_text(renderer: Renderer) -> None:
    html = str(renderer.event_html(round_started(EVIL)))
    assert_inert(html)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'hx-target="#rounds" hx-swap="beforeend"' in html
    assert "<fieldset disabled>" in html  # the form is off while the round runs


def test_started_shows_the_thinking_card_hidden_from_the_log(renderer: Renderer) -> None:
    html = str(renderer.event_html(started()))
    assert "Shadow is thinking…" in html
    assert 'class="turn turn-live"' in html
    assert 'aria-hidden="true"' in html
    assert "<strong>Shadow</strong> (1 of 5): processing…" in html


STYLESHEET = (Path(__file__).parents[2] / "src/psyche_sse/static/psyche.css").read_text()


def test_the_thinking_label_goes_with_the_first_delta(renderer: Renderer) -> None:
    card = str(renderer.event_html(started()))
    delta = str(renderer.event_html(update("Well")))
    # The label sits in the card beside its text element, empty until the first delta
    # swaps text into it; from then on the stylesheet hides the label.
    assert '<span class="thinking">' in card
    assert '<div id="turn-t1-text" class="turn-text"></div>' in card
    assert '<hx-partial hx-target="#turn-t1-text" hx-swap="beforeend">Well' in delta
    assert ".turn-live:has(> .turn-text:not(:empty)) .thinking {\n  display: none;" in STYLESHEET
    # A page rendered once the text has begun has no label at all.
    transcript = Transcript.from_events(SID, [round_started(), started(), update("Well", 3)])
    page = str(renderer.round_(SID, transcript.rounds[0]))
    assert "is thinking" not in page and "Well" in page


def test_the_final_reply_is_sanitised_markdown_with_its_facts(renderer: Renderer) -> None:
    html = str(renderer.event_html(complete("**Look** at it. " + EVIL)))
    assert_inert(html)
    assert "<strong>Look</strong>" in html
    assert 'hx-target="#turn-t1" hx-swap="outerHTML"' in html
    assert "turn-final" in html
    assert 'negative <span class="score">\u22120.42</span>' in html
    for fact in ("offline demo model", "native streaming", "first token 45 ms", "total 2.1 s"):
        assert fact in html


def test_a_failed_turn_shows_a_readable_error(renderer: Renderer) -> None:
    event = complete(
        "[Shadow is experiencing technical difficulties]",
        Status.ERROR,
        error="the provider said <b>no</b>",
        error_class="APIError",
    )
    html = str(renderer.event_html(event))
    assert "Shadow could not answer:" in html
    assert "the provider said &lt;b&gt;no&lt;/b&gt;" in html
    assert "(APIError)" in html
    assert "[Shadow is experiencing technical difficulties]" in html


def test_markdown_keeps_no_html_and_no_script_links() -> None:
    md = MarkdownRenderer()
    html = str(md('[click](javascript:alert(1)) <a href="https://x">x</a> `<b>`'))
    assert "javascript:" not in html.replace("[click](javascript:alert(1))", "")
    assert "<a " not in html
    assert "<code>&lt;b&gt;</code>" in html


def test_a_transcript_mid_turn_has_the_text_so_far() -> None:
    events = [round_started(), started(), update("Hello ", 3), update("there", 4, 0.6)]
    transcript = Transcript.from_events(SID, events)
    assert transcript.running
    assert transcript.last_event_id == 4
    turn = transcript.rounds[0].turns[0]
    assert transcript.rounds[0].current_turn is turn
    assert turn.text == "Hello there"
    assert 0 < turn.progress < 1  # an estimate until the next delta brings its own


def test_the_page_of_a_turn_in_progress_continues_where_the_stream_starts(
    renderer: Renderer,
) -> None:
    transcript = Transcript.from_events(SID, [round_started(), started(), update("Hello <b>", 3)])
    html = str(renderer.round_(SID, transcript.rounds[0]))
    assert '<div id="turn-t1-text" class="turn-text">Hello &lt;b&gt;</div>' in html
