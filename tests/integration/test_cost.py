"""Cost and budget end to end: rounds through LiteLLM against the fake OpenAI-compatible
provider on 127.0.0.1, with a model name LiteLLM's price map knows.

The fake reports usage (prompt tokens: the prompt's words; completion tokens: the reply's
pieces), so each turn's cost is known exactly: the map's prices times that usage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from psyche_sse.archetypes import ARCHETYPES
from psyche_sse.config import StreamingMode
from psyche_sse.engine import Engine
from psyche_sse.errors import OverBudget
from psyche_sse.export import to_html, to_json, to_markdown
from psyche_sse.llm import _litellm
from psyche_sse.transcript import Status, Transcript, cost_text, usd
from tests import inprocess
from tests.fakes import DEFAULT_REPLY, Connections, FakeProvider
from tests.web.sse import Msg, run_round

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:Items? .* `ReadOnly` qualifier:UserWarning"),
]

MODEL = "openai/gpt-4o"
SITUATION = "I was passed over for promotion"
# Each turn of the fake's default reply costs about $0.0004 with MODEL and these settings;
# at worst (the prompt counted by LiteLLM's tokenizer, plus max_tokens) about $0.0005.
MAX_TOKENS = 16


def prices() -> tuple[float, float]:
    entry = _litellm.litellm().model_cost["gpt-4o"]
    return entry["input_cost_per_token"], entry["output_cost_per_token"]


def priced(usage: dict[str, int]) -> float:
    prompt, completion = prices()
    return usage["prompt_tokens"] * prompt + usage["completion_tokens"] * completion


def config(fake: FakeProvider, where: Path | None = None, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "model": MODEL,
        "api_base": fake.openai_base,
        "max_tokens": MAX_TOKENS,
        "retry_attempts": 1,
        "timeout_total": 20.0,
        "simulated_delay": 0.0,
        **changes,
    }
    if where is None:
        return inprocess.Settings(db=":memory:", **values)
    return inprocess.settings(where, **values)


@pytest.fixture
def app(fake: FakeProvider, network: Connections, tmp_path: Path) -> Iterator[inprocess.InProcess]:
    with inprocess.running(config(fake, tmp_path)) as running:
        yield running


def completes(msgs: list[Msg]) -> list[dict[str, Any]]:
    return [m.data for m in msgs if m.type == "agent_processing_complete"]


def round_end(msgs: list[Msg]) -> dict[str, Any]:
    [end] = [m.data for m in msgs if m.type == "round_complete"]
    return end


# --- the cost of turns, rounds and sessions -------------------------------------------------


@pytest.mark.parametrize("streaming", ["native", "simulated"])
async def test_each_turn_costs_the_price_map_times_its_usage(
    fake: FakeProvider, network: Connections, streaming: StreamingMode
) -> None:
    async with Engine(config(fake, streaming=streaming)) as engine:
        session, round_id, text = engine.rounds.prepare(SITUATION)
        await engine.rounds.run(session, round_id, text)
        events = await engine.bus.history(session.id)
        stored = await engine.archive.transcript(session.id)
        counted = engine.metrics.registry.get_sample_value(
            "psyche_cost_usd_total", {"model": MODEL}
        )
    turns = [e.payload for e in events if e.type == "agent_processing_complete"]
    assert len(turns) == 5
    for turn in turns:
        meta = turn.metadata  # type: ignore[union-attr]
        assert meta.status is Status.OK and meta.streaming == streaming
        assert meta.usage is not None and meta.usage["completion_tokens"] == 15
        assert meta.cost_usd == pytest.approx(priced(meta.usage))
    [end] = [e.payload for e in events if e.type == "round_complete"]
    total = sum(t.metadata.cost_usd for t in turns)  # type: ignore[union-attr,misc]
    assert end.cost_usd == pytest.approx(total)  # type: ignore[union-attr]
    assert end.session_cost_usd == pytest.approx(total)  # type: ignore[union-attr]
    # The store has the same, and the session's sum.
    assert [t.cost_usd for t in stored.rounds[0].turns] == [
        t.metadata.cost_usd  # type: ignore[union-attr]
        for t in turns
    ]
    assert stored.cost_usd == pytest.approx(total)
    # /metrics counts the same dollars, by model.
    assert counted == pytest.approx(total)


def test_sums_match_in_the_stream_the_transcript_the_exports_and_the_page(
    app: inprocess.InProcess,
) -> None:
    with app.client() as client:
        first = run_round(client, SITUATION)
        session_id = first[0].data["session_id"]
        costs = [c["metadata"]["cost_usd"] for c in completes(first)]
        assert len(costs) == 5 and all(c > 0 for c in costs)
        end = round_end(first)
        assert end["cost_usd"] == pytest.approx(sum(costs))
        assert end["session_cost_usd"] == pytest.approx(sum(costs))

        # A second round in the same session: the session's sum goes on.
        more = run_round(client, SITUATION, session_id=session_id)
        more_costs = [c["metadata"]["cost_usd"] for c in completes(more)]
        assert round_end(more)["cost_usd"] == pytest.approx(sum(more_costs))
        total = sum(costs) + sum(more_costs)
        assert round_end(more)["session_cost_usd"] == pytest.approx(total)

        # The JSON transcript (the API's and the export's) and the other exports.
        stored = client.get(f"/api/sessions/{session_id}").json()
        turns = [t for r in stored["rounds"] for t in r["turns"]]
        assert [t["cost_usd"] for t in turns] == pytest.approx(costs + more_costs)
        exported = client.get(f"/api/sessions/{session_id}/export.json").json()
        assert exported["cost_usd"] == pytest.approx(total)
        assert [r["cost_usd"] for r in exported["rounds"]] == pytest.approx(
            [sum(costs), sum(more_costs)]
        )
        markdown = client.get(f"/api/sessions/{session_id}/export.md").text
        head, _, second_round = re.split(r"^## Round \d", markdown, flags=re.M)
        assert f"- 2 rounds · 10 turns · cost {usd(total)}" in head
        assert "· 5 turns · took" in second_round
        assert f"· cost {usd(sum(more_costs))}*" in second_round
        html = client.get(f"/api/sessions/{session_id}/export.html").text
        assert f"cost {usd(total)}" in html

        # The page: each card's cost, each round's, and the session's in its bar.
        page = client.get(f"/s/{session_id}").text
    for cost in costs + more_costs:
        assert f"<span>{cost_text(cost)}</span>" in page
    assert f'<span class="round-end-cost">{usd(sum(more_costs))}</span>' in page
    assert re.search(rf'id="session-cost"[^>]*>Cost {re.escape(usd(total))}<', page)


def test_the_offline_model_is_free_on_the_cards(tmp_path: Path) -> None:
    with (
        inprocess.running(inprocess.settings(tmp_path, budget_usd=0.000001)) as app,
        app.client() as client,
    ):
        msgs = run_round(client, SITUATION)
        assert [c["metadata"]["cost_usd"] for c in completes(msgs)] == [0.0] * 5
        end = round_end(msgs)
        assert end["status"] == "ok" and end["cost_usd"] == 0.0 and "reason" not in end
        page = client.get(f"/s/{msgs[0].data['session_id']}").text
    assert page.count("<span>free</span>") == 5


async def test_the_offline_model_tells_litellm_its_price() -> None:
    """The offline provider reports its cost (free), and LiteLLM hands it on: so it takes the
    provider's word rather than searching its price map at the end of every stream (about
    2 ms of CPU a turn, ``make bench``). Fails if LiteLLM stops carrying ``usage.cost``."""
    lm = await _litellm.load()
    stream = await lm.acompletion(
        model="psyche/offline",
        messages=[{"role": "user", "content": SITUATION}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"tps": 0},
    )
    usages = [chunk.usage async for chunk in stream if getattr(chunk, "usage", None)]
    assert usages and usages[-1].completion_tokens > 0
    assert usages[-1].cost == 0.0


def test_an_unknown_price_is_shown_as_such(fake: FakeProvider, network: Connections) -> None:
    with (
        inprocess.running(config(fake, model="openai/a-model-nobody-prices")) as app,
        app.client() as client,
    ):
        msgs = run_round(client, SITUATION)
        assert len(completes(msgs)) == 5
        assert all("cost_usd" not in c["metadata"] for c in completes(msgs))
        end = round_end(msgs)
        assert end["status"] == "ok" and "cost_usd" not in end
        assert "session_cost_usd" not in end
        session_id = msgs[0].data["session_id"]
        page = client.get(f"/s/{session_id}").text
        exported = client.get(f"/api/sessions/{session_id}/export.json").json()
    assert page.count("<span>cost unknown</span>") == 5
    assert exported["cost_usd"] is None


@pytest.mark.parametrize("streaming", ["native", "simulated"])
async def test_a_provider_that_reports_no_usage_is_counted_not_free(
    fake: FakeProvider, network: Connections, streaming: StreamingMode
) -> None:
    # LiteLLM counts a stream's tokens itself then; a whole reply's are counted the same way.
    fake.behave(no_usage=True)
    async with Engine(config(fake, streaming=streaming)) as engine:
        session, round_id, text = engine.rounds.prepare(SITUATION)
        await engine.rounds.run(session, round_id, text)
        events = await engine.bus.history(session.id)
    turns = [e.payload.metadata for e in events if e.type == "agent_processing_complete"]  # type: ignore[union-attr]
    assert [t.status for t in turns] == [Status.OK] * 5
    lm = _litellm.litellm()
    for turn in turns:
        assert turn.usage is not None and turn.cost_usd is not None
        # The reply's tokens, counted: not the fake's pieces, not zero.
        assert turn.usage["completion_tokens"] == lm.token_counter(
            model="gpt-4o", text=DEFAULT_REPLY
        ), streaming
        assert turn.usage["prompt_tokens"] > 50 and turn.usage["completion_tokens"] > 10
        assert turn.cost_usd == pytest.approx(priced(turn.usage))
    [end] = [e.payload for e in events if e.type == "round_complete"]
    assert end.cost_usd == pytest.approx(sum(t.cost_usd or 0 for t in turns))  # type: ignore[union-attr]


# --- the budget ---------------------------------------------------------------------------


def test_a_budget_stops_the_run_before_the_turn_that_could_exceed_it(
    fake: FakeProvider, network: Connections, tmp_path: Path
) -> None:
    budget = 0.0012  # about two turns and a half, at worst two and a bit
    with (
        inprocess.running(config(fake, tmp_path, budget_usd=budget)) as app,
        app.client() as client,
    ):
        msgs = run_round(client, SITUATION)
        session_id = msgs[0].data["session_id"]
        stored = client.get(f"/api/sessions/{session_id}").json()
        page = client.get(f"/s/{session_id}").text
    done = completes(msgs)
    spent = sum(c["metadata"]["cost_usd"] for c in done)
    assert 1 <= len(done) < 5 and spent <= budget
    # Nothing of the next agent started: the run stopped before its turn.
    stopped_before = ARCHETYPES[len(done)].agent_id
    assert [m.data["agent_id"] for m in msgs if m.type == "agent_processing_started"] == [
        c["agent_id"] for c in done
    ]
    end = round_end(msgs)
    assert end["status"] == "cancelled" and end["turns"] == len(done)
    assert end["session_cost_usd"] == pytest.approx(spent)
    reason = end["reason"]
    match = re.fullmatch(
        rf"{re.escape(stopped_before)}'s turn could cost \$([0-9.]+) and this session has "
        rf"{re.escape(usd(budget - spent))} of its \$0\.0012 budget left",
        reason,
    )
    assert match, reason
    assert float(match.group(1)) > budget - spent - 0.00005  # it would not have fitted
    assert msgs[-1].type == "conversation_state"  # the round ended as rounds end
    # The stored transcript says the same, and so does the page.
    assert stored["rounds"][0]["status"] == "cancelled"
    assert stored["rounds"][0]["reason"] == reason
    assert f"Round stopped: {reason}." in page.replace("&#39;", "'")


def test_a_session_over_its_budget_refuses_a_new_round(
    fake: FakeProvider, network: Connections, tmp_path: Path
) -> None:
    # The provider writes far past max_tokens, so the first turn spends more than the whole
    # budget, which its worst case (max_tokens of reply) did not foresee.
    fake.behave(reply=" ".join(f"word{n}" for n in range(120)))
    budget = 0.001
    with (
        inprocess.running(config(fake, tmp_path, budget_usd=budget)) as app,
        app.client() as client,
    ):
        msgs = run_round(client, SITUATION)
        [shadow] = completes(msgs)
        assert shadow["metadata"]["cost_usd"] > budget
        end = round_end(msgs)
        assert end["status"] == "cancelled"
        assert end["reason"].startswith("Persona's turn could cost $")
        assert end["reason"].endswith("this session has $0 of its $0.0010 budget left")
        session_id = shadow["session_id"]
        asked = len(fake.chats)

        # The API: a 402 with a JSON error, and nothing started.
        refused = client.post(
            "/api/rounds",
            json={"situation": SITUATION, "session_id": session_id},
            headers={"Accept": "application/json"},
        )
        assert refused.status_code == 402
        error = refused.json()["error"]
        assert error["code"] == "over_budget" and error["status"] == 402
        assert error["message"].startswith("this round cannot start: its first turn could cost")
        assert error["message"].endswith("this session has $0 of its $0.0010 budget left")
        # The page's form: the message in its error line.
        form = {"session_id": session_id, "situation": SITUATION}
        page = client.post(
            "/rounds", data=form, headers={"HX-Request": "true", "Origin": inprocess.BASE_URL}
        )
        assert page.status_code == 402
        assert 'hx-target="#composer-error"' in page.text
        assert "this round cannot start" in page.text
        # Without JavaScript: the page again, the message under the form, the text kept.
        plain = client.post("/rounds", data=form, headers={"Origin": inprocess.BASE_URL})
        assert plain.status_code == 402 and "this round cannot start" in plain.text
        assert SITUATION in plain.text
        stored = client.get(f"/api/sessions/{session_id}").json()
    assert len(stored["rounds"]) == 1 and len(fake.chats) == asked


def test_a_budget_too_small_for_one_turn_refuses_the_first_round(
    fake: FakeProvider, network: Connections, tmp_path: Path
) -> None:
    with (
        inprocess.running(config(fake, tmp_path, budget_usd=0.00001)) as app,
        app.client() as client,
    ):
        refused = client.post("/api/rounds", data={"situation": SITUATION})
        listed = client.get("/api/sessions").json()
    assert refused.status_code == 402
    message = refused.json()["error"]["message"]
    assert re.fullmatch(
        r"this round cannot start: its first turn could cost \$0\.\d+ and this session has "
        r"\$0\.000010 of its \$0\.000010 budget left",
        message,
    ), message
    assert fake.chats == [] and not listed["sessions"]


def test_a_stopped_round_reads_back_from_the_json_export(
    fake: FakeProvider, network: Connections, tmp_path: Path
) -> None:
    with (
        inprocess.running(config(fake, tmp_path, budget_usd=0.0012)) as app,
        app.client() as client,
    ):
        msgs = run_round(client, SITUATION)
        session_id = msgs[0].data["session_id"]
        text = client.get(f"/api/sessions/{session_id}/export.json").text
    back = Transcript.from_dict(json.loads(text))
    assert back.rounds[0].reason == round_end(msgs)["reason"]
    assert back.cost_usd == pytest.approx(json.loads(text)["cost_usd"])
    assert "Stopped: " in to_markdown(back) and "Stopped: " in to_html(back)
    assert to_json(back) == text


async def test_a_restarted_session_keeps_what_it_spent(
    fake: FakeProvider, network: Connections, tmp_path: Path
) -> None:
    fake.behave(reply=" ".join(f"word{n}" for n in range(120)))
    settings = config(fake, tmp_path, budget_usd=0.001)
    async with Engine(settings) as engine:
        session, round_id, text = engine.rounds.prepare(SITUATION)
        await engine.rounds.run(session, round_id, text)
        spent = session.council.spent_usd
    assert spent is not None and spent > 0.001
    async with Engine(settings) as engine:  # the server again, the session from the store
        restored = await engine.live.load(session.id)
        assert restored.council.spent_usd == pytest.approx(spent)
        left = re.escape("this session has $0 of its $0.0010 budget")
        with pytest.raises(OverBudget, match=left):
            await engine.rounds.afford(SITUATION, restored)
