"""A turn's cost from LiteLLM's bundled price map, the worst case a budget checks, and how
both read."""

from __future__ import annotations

import pytest
from tests.fakes import guard_network

from psyche_sse.config import Settings
from psyche_sse.council import check_budget
from psyche_sse.errors import OverBudget
from psyche_sse.llm import _litellm
from psyche_sse.llm.cost import turn_cost, worst_case
from psyche_sse.transcript import Round, Transcript, Turn, cost_text, total_cost, usd

pytestmark = pytest.mark.anyio

USAGE = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500}
MESSAGES = [
    {"role": "system", "content": "You are the Shadow, in a council of five."},
    {"role": "user", "content": "I was passed over for promotion. " * 40},
]


def listed(model: str) -> tuple[float, float]:
    """The model's prices per input and output token, as LiteLLM's map lists them."""
    entry = _litellm.litellm().model_cost[model]
    return entry["input_cost_per_token"], entry["output_cost_per_token"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "openai/gpt-4o-mini"])
async def test_a_known_model_costs_its_listed_prices_times_its_usage(model: str) -> None:
    prompt, completion = listed("gpt-4o-mini")
    assert prompt > 0 and completion > prompt
    cost = await turn_cost(model, USAGE)
    assert cost == pytest.approx(1200 * prompt + 300 * completion)


async def test_an_unknown_model_or_usage_has_no_cost() -> None:
    assert await turn_cost("openai/no-such-model-anywhere", USAGE) is None
    assert await turn_cost("not-a-provider-model", USAGE) is None
    assert await turn_cost("gpt-4o-mini", None) is None
    assert await turn_cost("gpt-4o-mini", {"total_tokens": 10}) is None
    # What LiteLLM leaves when a provider reports nothing: not a free turn.
    zeros = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert await turn_cost("gpt-4o-mini", zeros) is None
    assert await turn_cost(None, USAGE) is None


@pytest.mark.parametrize("model", ["psyche/offline", "psyche/offline-nostream"])
async def test_the_offline_model_is_free(model: str) -> None:
    assert await turn_cost(model, USAGE) == 0.0
    assert await turn_cost(model, None) == 0.0
    assert await worst_case(model, MESSAGES, 400) == 0.0


async def test_the_worst_case_is_the_prompt_and_max_tokens_at_the_models_prices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = guard_network(monkeypatch)
    prompt, completion = listed("gpt-4o-mini")
    worst = await worst_case("openai/gpt-4o-mini", MESSAGES, 400)
    assert worst is not None
    tokens = _litellm.litellm().token_counter(model="gpt-4o-mini", messages=MESSAGES)
    assert tokens > 200  # the prompt is counted, not guessed as nothing
    assert worst == pytest.approx(tokens * prompt + 400 * completion)
    # A model LiteLLM would count with a tokenizer from a hub: counted with the bundled one.
    assert await worst_case("ollama/llama3", MESSAGES, 400) is not None
    assert await worst_case("openai/no-such-model-anywhere", MESSAGES, 400) is None
    # An Ollama model LiteLLM's map lacks is priced as free, without asking its server.
    assert await worst_case("ollama_chat/a-local-model-of-mine", MESSAGES, 400) == 0.0
    assert await turn_cost("ollama_chat/a-local-model-of-mine", USAGE) == 0.0
    assert not seen.elsewhere() and not seen.lookups, "counting tokens stays on this machine"


async def test_a_budget_stops_what_could_go_past_it_and_says_what_is_left() -> None:
    settings = Settings(budget_usd=0.001, max_tokens=400)
    worst = await worst_case("openai/gpt-4o-mini", MESSAGES, 400)
    assert worst is not None
    await check_budget(settings, 0.001 - worst, "openai/gpt-4o-mini", MESSAGES, "a turn")
    with pytest.raises(OverBudget) as caught:
        await check_budget(settings, 0.0009, "openai/gpt-4o-mini", MESSAGES, "Persona's turn")
    assert str(caught.value) == (
        f"Persona's turn could cost {usd(worst)} and this session has $0.0001 of its "
        "$0.0010 budget left"
    )
    with pytest.raises(OverBudget, match="the price of openai/unknown-x is unknown"):
        await check_budget(settings, 0.0, "openai/unknown-x", MESSAGES, "a turn")
    # The offline model never meets a budget, even one already spent.
    await check_budget(settings, 5.0, "psyche/offline", MESSAGES, "a turn")
    # No budget: nothing is checked, not even an unknown price.
    await check_budget(Settings(), 5.0, "openai/unknown-x", MESSAGES, "a turn")


def test_costs_read_as_dollars_free_or_unknown() -> None:
    assert usd(0.0021) == "$0.0021"
    assert usd(0.01234) == "$0.0123"
    assert usd(12.5) == "$12.50"
    assert usd(0.00001) == "$0.000010"
    assert usd(0.0000123) == "$0.000012"
    assert usd(0.0001) == "$0.0001"
    assert usd(0.0) == "$0"
    assert cost_text(0.0) == "free"
    assert cost_text(None) == "cost unknown"
    assert cost_text(0.0021) == "$0.0021"


def test_sums_count_the_known_costs() -> None:
    def turn(cost: float | None) -> Turn:
        return Turn(id="t", agent_id="Shadow", agent_type="ShadowAgent", started="", cost_usd=cost)

    first = Round(id="a", index=1, situation="", started="", turns=[turn(0.25), turn(None)])
    second = Round(id="b", index=2, situation="", started="", turns=[turn(None)])
    third = Round(id="c", index=3, situation="", started="", turns=[turn(0.5), turn(0.0)])
    assert first.cost_usd == 0.25 and second.cost_usd is None and third.cost_usd == 0.5
    assert Transcript(id="s", rounds=[first, second, third]).cost_usd == 0.75
    assert Transcript(id="s").cost_usd is None
    assert total_cost([]) is None and total_cost([0.0]) == 0.0
