"""Exports: JSON reads back to the same transcript; Markdown and HTML escape every text."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from datetime import timedelta, timezone, tzinfo
from typing import Protocol

import pytest

from psyche_sse.config import Settings
from psyche_sse.engine import Engine
from psyche_sse.export import FORMATS, export, filename, from_json, to_html, to_markdown
from psyche_sse.links import SAFE_SCHEMES, is_safe_url
from psyche_sse.sentiment import SentimentScores
from psyche_sse.transcript import Metrics, Round, RoundState, Status, Transcript, Turn


class Render(Protocol):
    def __call__(self, transcript: Transcript, *, zone: tzinfo | None = None) -> str: ...


EVIL = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def transcript(title: str = "Ünïcode: my *boss* <b>yelled</b>") -> Transcript:
    turn = Turn(
        id="t1",
        agent_id="Shadow",
        agent_type="ShadowAgent",
        status=Status.INTERRUPTED,
        text=f"Line one\nLine two {EVIL}",
        started="2025-01-01T00:00:00.000+00:00",
        model="psyche/offline",
        streaming="native",
        reasoning=f"thinking {EVIL}",
        sentiment=SentimentScores(score=-0.25, label="negative"),
        usage={"total_tokens": 12},
        error=f"boom {EVIL}",
    )
    rnd = Round(
        id="r1",
        index=1,
        situation=f"My boss yelled\n{EVIL}",
        stimulus=f"stim {EVIL}",
        status=Status.INTERRUPTED,
        started="2025-01-01T00:00:00.000+00:00",
        turns=[turn],
    )
    return Transcript(
        id="abc123",
        title=title,
        created="2025-01-01T00:00:00.000+00:00",
        updated="2025-01-01T00:01:00.000+00:00",
        last_event_id=42,
        rounds=[rnd],
    )


def test_json_reads_back_to_the_same_transcript() -> None:
    original = transcript()
    file = export(original, "json")
    assert file.media_type == "application/json"
    assert from_json(file.body.decode()) == original
    assert json.loads(file.body)["rounds"][0]["turns"][0]["text"].endswith(EVIL)


def test_markdown_keeps_the_words_and_escapes_the_html() -> None:
    text = to_markdown(transcript())
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    assert '&lt;script&gt;alert("x")&lt;/script&gt; &amp; &lt;img' in text
    assert "Line one\nLine two" in text and "> My boss yelled" in text
    assert "### Shadow" in text and "interrupted" in text


def test_html_is_standalone_escaped_and_script_free() -> None:
    page = to_html(transcript())
    assert page.startswith("<!doctype html>") and "<style>" in page
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp;" in page
    assert "default-src 'none'" in page  # no script could run even if one slipped in
    assert "#2c3e50" in page  # Shadow's colour
    assert "<link" not in page and "url(" not in page  # self-contained


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_file_names_and_types(fmt: str) -> None:
    file = export(transcript(), fmt)
    assert file.filename == f"psyche-unicode-my-boss-b-yelled-b-abc123.{fmt}"
    assert "charset=utf-8" in file.media_type or fmt == "json"
    assert file.content_disposition == f'attachment; filename="{file.filename}"'


def test_file_name_of_an_untitled_session() -> None:
    assert filename(transcript(title="¿¿??"), "md") == "psyche-session-abc123.md"


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        export(transcript(), "pdf")


@pytest.mark.anyio
async def test_a_recorded_round_survives_the_json_round_trip(settings: Settings) -> None:
    async with Engine(settings) as engine:
        session, round_id, text = engine.rounds.prepare("I lied to a friend")
        await engine.rounds.run(session, round_id, text)
        recorded = await engine.archive.transcript(session.id)
    assert from_json(export(recorded, "json").body.decode()) == recorded
    page = export(recorded, "html").body.decode()
    assert all(t.agent_id in page for t in recorded.rounds[0].turns)


UNSAFE_LINKS = [
    "[click](javascript:alert(1))",
    "[click]( JavaScript:alert(document.cookie) )",
    "[click](vbscript:msgbox(1))",
    "![pic](data:text/html;base64,PHNjcmlwdD4=)",
    '[click](data:text/html,x "title")',
    "[click](javascript\\:alert(1))",  # the backslash escape goes when the link is read
    "[ref]\n\n[ref]: javascript:alert(1)",
    "[ref]\n\n[ref]:\n  vbscript:x",
]


@pytest.mark.parametrize("markdown", UNSAFE_LINKS)
def test_markdown_neutralises_links_the_page_would_drop(markdown: str) -> None:
    from markdown_it import MarkdownIt

    text = to_markdown(replace_text(transcript(), markdown))
    # Whatever reads the file, no link in it has a scheme the page does not keep. (This
    # renderer drops some such links itself: look at the hrefs it would have written.)
    md = MarkdownIt("commonmark")
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    html = md.render(text)
    hrefs = re.findall(r'(?:href|src)="([^"]*)"', html)
    assert all(is_safe_url(h) for h in hrefs), hrefs
    assert "click" in text or "pic" in text or "[ref]" in text  # the words stay


@pytest.mark.parametrize(
    "markdown",
    [
        "[site](https://example.com/a_(b))",
        "[mail](mailto:me@example.com)",
        "[here](#section)",
        "[up](../x.html)",
        "the javascript: protocol is a word here, and so is data:",
    ],
)
def test_markdown_keeps_safe_links_and_prose(markdown: str) -> None:
    assert markdown.replace("&", "&amp;") in to_markdown(replace_text(transcript(), markdown))


def test_the_page_and_the_export_share_one_rule() -> None:
    from psyche_sse.web import markdown as page_markdown

    assert page_markdown.SAFE_SCHEMES is SAFE_SCHEMES
    for url in ("javascript:x", "JAVA\tSCRIPT:x", " data:x", "vbscript:x", "file:///etc/passwd"):
        assert not is_safe_url(url), url
    for url in ("https://x", "http://x", "mailto:a@b", "/a:b", "#top", "x.html", ""):
        assert is_safe_url(url), url


def replace_text(original: Transcript, text: str) -> Transcript:
    rnd = original.rounds[0]
    turn = dataclasses.replace(rnd.turns[0], text=text)
    return dataclasses.replace(original, rounds=(dataclasses.replace(rnd, turns=(turn,)),))


# --- for people: times, plurals, the summary of each round -------------------------------

PARIS_WINTER = timezone(timedelta(hours=1))


def two_rounds() -> Transcript:
    """A session over two days: a first round of one turn, with its state, guidance and
    cost; a second round stopped by the budget, with no state."""
    turn = Turn(
        id="t1",
        agent_id="Ego",
        agent_type="EgoAgent",
        status=Status.OK,
        text="Decide by Friday.",
        started="2026-11-30T13:05:10.000+00:00",
        cost_usd=0.0123,
    )
    state = RoundState(
        metrics=Metrics(
            conflict=0.12,
            engagement=0.34,
            diversity=0.56,
            repetition=0.78,
            intensity=0.9,
            stagnation=0.81,
        ),
        guidance=(f"Speak more plainly {EVIL}",),
        emergency=True,
    )
    first = Round(
        id="r1",
        index=1,
        situation="Stay or go",
        status=Status.OK,
        started="2026-11-30T13:05:00.000+00:00",
        duration_ms=2400,
        turns=[turn],
        state=state,
    )
    second = Round(
        id="r2",
        index=2,
        situation="Stay or go",
        status=Status.CANCELLED,
        started="2026-12-01T09:30:00.000+00:00",
        turns=[
            dataclasses.replace(turn, id="t2", cost_usd=None),
            dataclasses.replace(turn, id="t3", agent_id="Self", cost_usd=None),
        ],
        reason=f"over budget {EVIL}",
    )
    return Transcript(
        id="two",
        title="Stay or go",
        created="2026-11-30T13:05:00.000+00:00",
        updated="2026-12-01T09:31:00.000+00:00",
        rounds=[first, second],
    )


@pytest.mark.parametrize("render", [to_markdown, to_html])
def test_times_are_readable_in_one_zone_named_once(render: Render) -> None:
    text = render(two_rounds(), zone=PARIS_WINTER)
    assert "30 November 2026, 14:05" in text  # the session's start, and its first round's
    assert "1 December 2026, 10:31" in text  # last activity, on another day
    assert "started 1 December 2026, 10:30" in text  # the second round
    assert text.count("UTC+01:00") == 1
    assert "2026-11-30T" not in text and "+00:00" not in text  # no raw ISO timestamps


@pytest.mark.parametrize("render", [to_markdown, to_html])
def test_times_are_in_the_servers_zone_by_default(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A POSIX zone (needs no time zone database): UTC+05:30 all year.
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    try:
        text = render(two_rounds())
    finally:
        monkeypatch.undo()
        time.tzset()
    assert "30 November 2026, 18:35" in text and text.count("UTC+05:30") == 1
    assert "Times are in UTC+05:30, the server" in text


@pytest.mark.parametrize("render", [to_markdown, to_html])
def test_counts_have_the_right_plural(render: Render) -> None:
    both = render(two_rounds(), zone=PARIS_WINTER)
    assert "2 rounds · 3 turns" in both
    assert "· 1 turn ·" in both and "· 2 turns" in both  # each round's own count
    one = two_rounds()
    one.rounds[1:] = []
    assert "1 round · 1 turn · cost $0.0123" in render(one, zone=PARIS_WINTER)
    assert "(s)" not in both


def test_markdown_sums_up_each_round() -> None:
    text = to_markdown(two_rounds(), zone=PARIS_WINTER)
    first = text[text.index("## Round 1") : text.index("## Round 2")]
    second = text[text.index("## Round 2") :]
    assert "*Finished · started 14:05 · 1 turn · took 2.4 s · cost $0.0123*" in (first)
    lines = first.splitlines()
    head = lines.index(
        "| conflict | engagement | diversity | repetition | intensity | stagnation "
        "| emergency mode |"
    )
    assert lines[head + 2] == "| 0.12 | 0.34 | 0.56 | 0.78 | 0.90 | 0.81 | on |"
    assert "- Guidance for the next round: Speak more plainly &lt;script&gt;" in first
    # Stopped by the budget: the reason, no cost (none is known), no state.
    assert "*Stopped: over budget &lt;script&gt;" in second
    assert "cost" not in second.split("\n\n")[1]
    assert "No state was recorded after this round." in second
    assert "<script" not in text


def test_html_sums_up_each_round_escaped() -> None:
    page = to_html(two_rounds(), zone=PARIS_WINTER)
    first = page[page.index("<h2>Round 1") : page.index("<h2>Round 2")]
    summary = first[first.index('<div class="summary">') : first.index("</div>")]
    assert "Finished · started 14:05 · 1 turn · took 2.4 s · cost $0.0123" in (summary)
    cells = re.findall(r"<td>([^<]*)</td>", summary)
    assert cells == ["0.12", "0.34", "0.56", "0.78", "0.90", "0.81", "on"]
    assert re.findall(r'<th scope="col">([^<]*)</th>', summary)[-1] == "emergency mode"
    assert "Guidance for the next round: Speak more plainly &lt;script&gt;" in summary
    assert "Stopped: over budget &lt;script&gt;alert(&quot;x&quot;)" in page
    assert "<script" not in page and "<img" not in page
