"""What a provider's failures do to the metrics, the model health and the log lines, with the
fake provider answering 500 or 429 over real HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse

from psyche_sse.engine import Engine
from psyche_sse.events import Event
from psyche_sse.logs import LogIds, use_format
from psyche_sse.metrics import ServiceMetrics
from tests.fakes import Connections, FakeProvider
from tests.integration.test_llm_providers import OPENAI, settings_for
from tests.live import start_server, stop_server
from tests.waiting import wait_for
from tests.web.sse import messages

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:Items? .* `ReadOnly` qualifier:UserWarning"),
]


def sample(m: ServiceMetrics, name: str, **labels: str) -> float:
    value = m.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def run_round(engine: Engine, situation: str = "I was passed over") -> list[Event]:
    session, round_id, text = engine.rounds.prepare(situation)
    await engine.rounds.run(session, round_id, text)
    return await engine.bus.history(session.id)


async def test_a_retried_500_is_counted_and_the_round_goes_on(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(fail=(500,))
    # Native only: in "auto", a stream that fails before its first token is asked again
    # without streaming rather than retried.
    async with Engine(settings_for(fake, streaming="native")) as engine:
        await run_round(engine)
        m = engine.metrics
        retried = {"model": OPENAI, "error_class": "InternalServerError"}
        assert sample(m, "psyche_llm_retries_total", **retried) == 1
        ok = {"status": "ok", "model": OPENAI, "streaming": "native"}
        assert sample(m, "psyche_turns_total", **ok) == 5
        assert sample(m, "psyche_rounds_total", status="ok") == 1
        errors = m.registry.get_sample_value("psyche_provider_errors_total", retried)
        assert errors is None  # retried, then answered: no turn failed
        health = engine.health.models[OPENAI]
        assert (health.retries, health.turns_ok, health.turns_error) == (1, 5, 0)
        assert health.last_success is not None and health.last_error is None
        assert health.mean_first_token_ms is not None


async def test_provider_errors_are_counted_by_class(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(fail_always=429)
    async with Engine(settings_for(fake, retry_attempts=2)) as engine:
        await run_round(engine)
        m = engine.metrics
        limited = {"model": OPENAI, "error_class": "RateLimitError"}
        assert sample(m, "psyche_provider_errors_total", **limited) == 5
        assert sample(m, "psyche_llm_retries_total", **limited) == 5  # one per turn
        failed = {"status": "error", "model": OPENAI, "streaming": "none"}
        assert sample(m, "psyche_turns_total", **failed) == 5
        assert sample(m, "psyche_rounds_total", status="error") == 1
        # Failed turns have a duration, and no first token.
        assert sample(m, "psyche_turn_duration_seconds_count", model=OPENAI) == 5
        assert sample(m, "psyche_turn_first_token_seconds_count", model=OPENAI) == 0
        status = engine.status()
        (model,) = status.models
        assert (model.model, model.turns_error, model.retries) == (OPENAI, 5, 5)
        assert model.last_error_class == "RateLimitError" and model.last_error is not None
        assert model.last_success is None and model.mean_first_token_ms is None


async def test_rate_limit_waits_are_counted(fake: FakeProvider, network: Connections) -> None:
    # One request a second: turns that follow each other within a second wait for it.
    async with Engine(settings_for(fake, rate_limit_rpm=60)) as engine:
        await run_round(engine)
        m = engine.metrics
        waits = sample(m, "psyche_rate_limit_waits_total", model=OPENAI)
        assert 1 <= waits <= 4  # the first call never waits
        assert sample(m, "psyche_rate_limit_wait_seconds_total", model=OPENAI) > 0
        health = engine.health.models[OPENAI]
        assert health.rate_limit_waits == waits and health.rate_limit_wait_s > 0


@pytest.fixture
def json_lines() -> Iterator[tuple[LogIds, list[str]]]:
    """The package's log lines as JSON, read from a handler of its own."""
    ids = LogIds()
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    logger = logging.getLogger("psyche_sse")
    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    try:
        use_format("json", ids, logger)
        yield ids, lines
    finally:
        logger.removeHandler(handler)


async def test_log_lines_inside_a_turn_carry_its_ids(
    fake: FakeProvider, network: Connections, json_lines: tuple[LogIds, list[str]]
) -> None:
    ids, lines = json_lines
    fake.behave(fail=(500,))
    async with Engine(settings_for(fake, streaming="native"), log_ids=ids) as engine:
        events = await run_round(engine)
    first = next(e for e in events if e.type == "agent_processing_started")
    retry = [json.loads(line) for line in lines if "retrying" in line]
    assert len(retry) == 1
    assert retry[0]["logger"] == "psyche_sse.llm.client" and retry[0]["level"] == "WARNING"
    assert (retry[0]["session_id"], retry[0]["round_id"], retry[0]["turn_id"]) == (
        first.session_id,
        first.payload.round_id,
        first.turn_id,
    )


@pytest.mark.slow
def test_psyche_sse_serve_writes_json_lines(fake: FakeProvider, tmp_path: Path) -> None:
    """The real command: every line it writes is JSON, uvicorn's included, and a turn's
    lines carry the turn's ids."""
    fake.behave(fail=(500,))
    server = start_server(
        tmp_path,
        {"OPENAI_API_KEY": "sk-test-not-a-real-key"},
        log_format="json",
        model=OPENAI,
        api_base=fake.openai_base,
        streaming="native",
        retry_base="0.01",
        retry_cap="0.05",
    )
    try:
        with (
            httpx.Client(base_url=server.url, timeout=30) as client,
            connect_sse(client, "POST", "/api/rounds", data={"situation": "A hard week"}) as src,
        ):
            got = list(messages(src))
        first = next(m for m in got if m.type == "agent_processing_started")
        wait_for(lambda: any("retrying" in line for line in server.lines))
    finally:
        stop_server(server)
    parsed = [json.loads(line) for line in server.lines if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(parsed[0])
    assert any(p["logger"].startswith("uvicorn") for p in parsed)
    (retry,) = [p for p in parsed if "retrying" in p["message"]]
    assert retry["session_id"] == first.data["session_id"]
    assert retry["round_id"] == first.data["round_id"]
    assert retry["turn_id"] == first.turn_id
    assert "sk-test" not in "".join(server.lines)
