"""``psyche-sse run`` and costs: each round's cost at its end, and the budget's two lines."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from tests.cli.test_cli import Run, against, run  # noqa: F401  (a fixture, used by ``cli``)
from tests.fakes import FakeProvider

MODEL = "openai/gpt-4o"


@pytest.fixture
def cli(request: pytest.FixtureRequest) -> Run:
    """The command as the other CLI tests run it (their fixture ``run``)."""
    command: Run = request.getfixturevalue("run")
    return command


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider().running() as server:
        yield server


def test_the_round_line_says_what_it_cost(cli: Run, fake: FakeProvider) -> None:
    fake.behave()
    result = cli("run", "--model", MODEL, "hi", **against(fake.openai_base))
    assert result.returncode == 0, result.stderr
    assert re.search(r"Round complete \(ok, [0-9.]+ m?s, \$0\.\d{4}\)", result.stdout)


def test_the_offline_model_is_free(cli: Run) -> None:
    result = cli("run", "hi", PSYCHE_OFFLINE_TPS="0", PSYCHE_BUDGET_USD="0.000001")
    assert result.returncode == 0, result.stderr
    assert re.search(r"Round complete \(ok, [0-9.]+ m?s, free\)", result.stdout)


@pytest.mark.parametrize("json_view", [False, True])
def test_a_run_the_budget_stops_ends_with_one_line(
    cli: Run, fake: FakeProvider, json_view: bool
) -> None:
    fake.behave()
    view = ["--json"] if json_view else []
    result = cli(
        "run",
        *view,
        "--model",
        MODEL,
        "I was passed over for promotion",
        PSYCHE_BUDGET_USD="0.0012",
        PSYCHE_MAX_TOKENS="16",
        **against(fake.openai_base),
    )
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert re.fullmatch(
        r"psyche-sse: stopped: [A-Za-z/]+'s turn could cost \$0\.\d+ and this session has "
        r"\$0\.\d+ of its \$0\.0012 budget left",
        line,
    ), line
    if json_view:
        events = [json.loads(x) for x in result.stdout.splitlines()]
        [end] = [e for e in events if e["type"] == "round_complete"]
        assert end["status"] == "cancelled" and line.endswith(end["reason"])
    else:
        assert "Round complete (cancelled" in result.stdout


def test_a_budget_that_cannot_pay_a_turn_is_refused_with_exit_2(
    cli: Run, fake: FakeProvider
) -> None:
    fake.behave()
    asked = len(fake.chats)
    result = cli(
        "run", "--model", MODEL, "hi", PSYCHE_BUDGET_USD="0.00001", **against(fake.openai_base)
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("psyche-sse: error: this round cannot start: its first turn could")
    assert line.endswith("this session has $0.000010 of its $0.000010 budget left")
    assert result.stdout == "" and len(fake.chats) == asked
