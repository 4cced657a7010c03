"""Costs in the page's fragments: a finished card, a round's end and the session bar, as the
browser stream sends them; and in ``session_history``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from psyche_sse.config import Settings
from psyche_sse.events import Event, SessionHistory, parse
from psyche_sse.transcript import Status, Transcript
from psyche_sse.web.render import Renderer
from tests import factories as f

SID, RID = "s1", "r1"
REASON = "Persona's turn could cost $0.0120 and this session has $0.0040 of its $0.0500 budget left"


def stopped_round(cost: float | None = 0.0021) -> Event:
    payload = replace(
        f.round_complete(SID, RID, status=Status.CANCELLED, turns=1),
        cost_usd=cost,
        session_cost_usd=0.046,
        reason=REASON,
    )
    return Event(9, payload)


def test_a_finished_card_shows_its_cost(tmp_path: Path) -> None:
    renderer = Renderer(Settings(db=tmp_path / "db"))
    for cost, shown in ((0.0021, "$0.0021"), (0.0, "free"), (None, "cost unknown")):
        complete = f.complete("Hello", "t1", session=SID, round_id=RID, cost_usd=cost)
        html = str(renderer.event_html(Event(5, complete)))
        assert f"<span>{shown}</span>" in html, html


def test_a_round_stopped_by_its_budget_says_why_and_what_it_cost(tmp_path: Path) -> None:
    renderer = Renderer(Settings(db=tmp_path / "db", budget_usd=0.05))
    html = str(renderer.event_html(stopped_round())).replace("&#39;", "'")
    assert f"Round stopped: {REASON}." in html
    assert '<span class="round-end-cost">$0.0021</span>' in html
    assert 'hx-target="#session-cost"' in html
    assert "Cost $0.0460 of $0.0500 budget" in html
    # Unknown: no cost shown for the round.
    html = str(renderer.event_html(stopped_round(None)))
    assert "round-end-cost" not in html


def test_the_session_bar_shows_the_sessions_cost(tmp_path: Path) -> None:
    plain = Renderer(Settings(db=tmp_path / "db"))
    assert "Cost $0.0123<" in str(plain.sessionbar(SID, "A title", 0.0123))
    assert "Cost free<" in str(plain.sessionbar(SID, "A title", 0.0))
    budgeted = Renderer(Settings(db=tmp_path / "db", budget_usd=2))
    assert "Cost $0.0123 of $2.00 budget<" in str(budgeted.sessionbar(SID, "A title", 0.0123))
    assert "Budget $2.00<" in str(budgeted.sessionbar(SID, "A title", None))


def test_session_history_carries_the_costs_and_the_reason() -> None:
    events = f.numbered(
        f.round_started(SID, RID),
        f.started("t1", session=SID, round_id=RID),
        f.complete("Hello", "t1", session=SID, round_id=RID, cost_usd=0.0021),
        stopped_round().payload,
    )
    transcript = Transcript.from_events(SID, events)
    assert transcript.cost_usd == 0.0021
    assert transcript.rounds[0].reason == REASON
    sent = json.loads(Event(10, SessionHistory.of(transcript)).json())
    back = parse(sent)
    assert isinstance(back, SessionHistory)
    assert back.transcript.rounds[0].turns[0].cost_usd == 0.0021
    assert back.transcript.rounds[0].reason == REASON
