"""The pure parts of operations: counting events, model health, JSON log lines, formatting."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests import factories as f
from tests.schema import check_event

from psyche_sse.config import Settings
from psyche_sse.health import Health, StatusSources
from psyche_sse.logs import IdsFilter, JsonFormatter, LogIds, use_format, uvicorn_config
from psyche_sse.metrics import ServiceMetrics
from psyche_sse.store.database import file_bytes as database_bytes
from psyche_sse.transcript import Status
from psyche_sse.web.status import duration, size


def metrics(settings: Settings | None = None, *, running: int = 0) -> ServiceMetrics:
    return ServiceMetrics(
        Health(settings or Settings(db=":memory:")),
        rounds_running=lambda: running,
        database_bytes=lambda: 4096,
        llm_ready=lambda: True,
    )


def sample(m: ServiceMetrics, name: str, **labels: str) -> float:
    value = m.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_round_of_events_is_counted_by_type_status_and_model() -> None:
    m = metrics()
    events = f.numbered(
        f.round_started(),
        *f.whole_turn("one two three", "t1", "Shadow"),
        f.started("t2", "Persona"),
        f.complete(
            "[Persona is experiencing technical difficulties]",
            "t2",
            agent="Persona",
            status=Status.ERROR,
            error_class="RateLimitError",
            error="the provider rate limited (RateLimitError)",
            streaming=None,
            first_token_ms=None,
            duration_ms=2500,
        ),
        f.round_complete(status=Status.ERROR),
    )
    for event in events:
        m.observe(event)
    assert sample(m, "psyche_events_published_total", type="agent_processing_update") == 3
    assert sample(m, "psyche_events_published_total", type="agent_processing_started") == 2
    assert sample(m, "psyche_rounds_total", status="error") == 1
    ok = {"status": "ok", "model": f.MODEL, "streaming": "native"}
    assert sample(m, "psyche_turns_total", **ok) == 1
    failed = {"status": "error", "model": f.MODEL, "streaming": "none"}
    assert sample(m, "psyche_turns_total", **failed) == 1
    errors = {"model": f.MODEL, "error_class": "RateLimitError"}
    assert sample(m, "psyche_provider_errors_total", **errors) == 1
    assert sample(m, "psyche_turn_duration_seconds_count", model=f.MODEL) == 2
    assert sample(m, "psyche_turn_duration_seconds_sum", model=f.MODEL) == pytest.approx(3.7)
    # Only the turn that had a first token is in that histogram.
    assert sample(m, "psyche_turn_first_token_seconds_count", model=f.MODEL) == 1
    health = m.health.models[f.MODEL]
    assert (health.turns_ok, health.turns_error) == (1, 1)
    assert health.last_error_class == "RateLimitError"
    assert health.last_success is not None and health.last_error is not None
    assert health.mean_first_token_ms == 100


def test_the_exposition_is_prometheus_text_with_what_is_read_at_scrape_time() -> None:
    m = metrics(running=3)
    families = {f.name: f for f in text_string_to_metric_families(m.exposition().decode())}
    assert families["psyche_rounds_running"].samples[0].value == 3
    assert families["psyche_database_bytes"].samples[0].value == 4096
    assert families["psyche_llm_ready"].samples[0].value == 1
    assert "process_resident_memory_bytes" in {
        s.name for fam in families.values() for s in fam.samples
    }


def test_two_engines_metrics_do_not_share_a_registry() -> None:
    one, two = metrics(), metrics()
    one.observe(f.numbered(f.round_complete())[0])
    assert sample(one, "psyche_rounds_total", status="ok") == 1
    assert sample(two, "psyche_rounds_total", status="ok") == 0


def test_viewers_go_up_and_down_and_merging_is_a_ratio() -> None:
    m = metrics()
    assert m.merge_ratio() == 1.0
    with m.viewer("json"), m.viewer("html"):
        assert sample(m, "psyche_viewers", format="json") == 1
        assert m.viewers_open("json", "html") == 2
        with m.viewer("status"):
            assert m.viewers_open() == 3
            assert m.viewers_open("json", "html") == 2
    assert sample(m, "psyche_viewers", format="json") == 0
    assert m.viewers_open() == 0
    m.merged(12, 3)
    m.merged(4, 1)
    assert m.merge_ratio() == 4.0
    assert sample(m, "psyche_stream_deltas_total") == 16
    assert sample(m, "psyche_stream_delta_messages_total") == 4
    assert sample(m, "psyche_stream_delta_merge_ratio") == 4.0


def test_retries_and_rate_limit_waits_feed_the_model_health() -> None:
    m = metrics()
    m.retried("openai/gpt-4o-mini", "InternalServerError")
    m.rate_limited("openai/gpt-4o-mini", 0.25)
    m.rate_limited("openai/gpt-4o-mini", 0.5)
    labels = {"model": "openai/gpt-4o-mini"}
    assert sample(m, "psyche_llm_retries_total", error_class="InternalServerError", **labels) == 1
    assert sample(m, "psyche_rate_limit_waits_total", **labels) == 2
    assert sample(m, "psyche_rate_limit_wait_seconds_total", **labels) == 0.75
    health = m.health.models["openai/gpt-4o-mini"]
    assert (health.retries, health.rate_limit_waits, health.rate_limit_wait_s) == (1, 2, 0.75)


def sources(**viewers: int) -> StatusSources:
    return StatusSources(
        version="9.9",
        title=lambda sid: f"<b>{sid}</b>",
        viewers=lambda sid: viewers.get(sid, 0),
        all_viewers=lambda: sum(viewers.values()),
        llm_ready=lambda: False,
        database_bytes=lambda: None,
    )


def test_the_snapshot_has_the_running_rounds_and_every_configured_model() -> None:
    settings = Settings(db=":memory:", model="psyche/offline", model_ego="openai/gpt-4o-mini")
    m = metrics(settings)
    for event in f.numbered(f.round_started(session="a", round_id="ra"), f.started(session="a")):
        m.observe(event)
    status = m.health.snapshot(sources(a=2))
    assert [(r.session_id, r.speaking, r.viewers, r.title) for r in status.rounds] == [
        ("a", "Shadow", 2, "<b>a</b>")
    ]
    models = {s.model: s for s in status.models}
    assert models["psyche/offline"].agents == ("Shadow", "Persona", "Anima/Animus", "Self")
    assert models["psyche/offline"].offline
    ego = models["openai/gpt-4o-mini"]
    assert ego.agents == ("Ego",) and not ego.offline
    assert status.rounds_running == 1 and status.viewers == 2 and not status.llm_ready
    assert status.uptime_s >= 0 and status.memory_rss_bytes > 0
    data = json.loads(status.json())
    check_event(data)  # the published schema has it
    assert data["type"] == "system_status" and "session_id" not in data
    # The round leaves when it completes, and only then.
    m.observe(f.numbered(f.round_complete(session="a", round_id="other"))[0])
    assert m.health.snapshot(sources()).rounds_running == 1
    m.observe(f.numbered(f.round_complete(session="a", round_id="ra"))[0])
    assert m.health.snapshot(sources()).rounds == ()


def test_database_bytes_counts_the_write_ahead_log(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    assert database_bytes(str(db)) is None
    assert database_bytes(":memory:") is None
    db.write_bytes(b"x" * 100)
    assert database_bytes(str(db)) == 100
    (tmp_path / "x.db-wal").write_bytes(b"y" * 30)
    assert database_bytes(str(db)) == 130


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (42.9, "42 s"), (185, "3 min 05 s"), (7620, "2 h 07 min"), (273600, "3 d 4 h")],
)
def test_durations_read_as_people_read_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(None, "—"), (512, "512 B"), (2048, "2.0 KB"), (3 * 1024**2 + 1024**2 // 2, "3.5 MB")],
)
def test_sizes_read_as_people_read_them(count: int | None, text: str) -> None:
    assert size(count) == text


# --- log lines ---------------------------------------------------------------------------


def json_logger(ids: LogIds) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger(f"test.metrics.{id(out)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    use_format("json", ids, logger)
    return logger, out


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_the_ids_bound_where_they_were_logged() -> None:
    ids = LogIds()
    logger, out = json_logger(ids)
    use_format("json", ids, logger)  # again: still one filter, reading ``ids``
    assert len(logger.handlers[0].filters) == 1
    logger.info("before")
    with ids.bind(session_id="s1", round_id="r1"):
        logger.warning("in the round: %s", 'a "quoted"\nline')
        with ids.bind(turn_id="t1"):
            logger.info("in the turn")
        logger.info("after the turn")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    got = lines(out)
    assert [g["message"] for g in got] == [
        "before",
        'in the round: a "quoted"\nline',
        "in the turn",
        "after the turn",
        "failed",
    ]
    assert "session_id" not in got[0]
    assert (got[1]["session_id"], got[1]["round_id"], got[1]["level"]) == ("s1", "r1", "WARNING")
    assert got[2]["turn_id"] == "t1" and got[2]["round_id"] == "r1"
    assert "turn_id" not in got[3]
    assert got[4]["level"] == "ERROR" and "ValueError: boom" in str(got[4]["exception"])
    assert {"time", "level", "logger", "message"} <= set(got[0])
    assert str(got[0]["time"]).endswith("+00:00")


@pytest.mark.anyio
async def test_ids_stay_with_their_task() -> None:
    """Two rounds running at once: each line carries its own round's ids."""
    ids = LogIds()
    logger, out = json_logger(ids)

    async def round_(name: str, ready: anyio.Event, go: anyio.Event) -> None:
        with ids.bind(round_id=name):
            ready.set()
            await go.wait()
            logger.info(name)

    go = anyio.Event()
    a, b = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(round_, "ra", a, go)
        tg.start_soon(round_, "rb", b, go)
        await a.wait()
        await b.wait()
        go.set()
    assert sorted((g["message"], g["round_id"]) for g in lines(out)) == [
        ("ra", "ra"),
        ("rb", "rb"),
    ]


def test_text_leaves_handlers_alone_and_uvicorns_config_becomes_json() -> None:
    ids = LogIds()
    handler = logging.StreamHandler(io.StringIO())
    logger = logging.getLogger("test.metrics.text")
    logger.handlers = [handler]
    use_format("text", ids, logger)
    assert not isinstance(handler.formatter, JsonFormatter) and not handler.filters
    base = {
        "version": 1,
        "formatters": {"default": {"fmt": "%(message)s"}, "access": {"fmt": "%(message)s"}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default"}},
    }
    text = uvicorn_config("text", ids, base)
    assert text is not None
    assert {k: v for k, v in text.items() if k not in ("filters", "loggers")} == base
    assert uvicorn_config("json", ids, None) is None
    config = uvicorn_config("json", ids, base)
    assert config is not None
    assert config["formatters"] == {
        "default": {"()": JsonFormatter},
        "access": {"()": JsonFormatter},
    }
    assert config["handlers"]["default"]["filters"] == ["ids"]
    assert config["filters"]["ids"] == {"()": IdsFilter, "ids": ids}
    assert "filters" not in base["handlers"]["default"]  # the original is left as it was
