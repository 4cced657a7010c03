from __future__ import annotations

import json

import httpx
import pytest
from httpx_sse import EventSource

from psyche_sse import events as ev
from psyche_sse.events import Event, EventType, TurnStatus, encode_comment, encode_sse


def parse(raw: bytes) -> list[tuple[str, str, str, int | None]]:
    """Parse SSE bytes back with httpx-sse, the way a client would."""
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)
    return [(s.id, s.event, s.data, s.retry) for s in EventSource(response).iter_sse()]


def test_sse_round_trip_with_multiline_data_id_event_and_retry() -> None:
    data = "line one\nline two\r\nline three\rend"
    raw = encode_sse(data, event="agent_processing_update", id=42, retry_ms=3000)
    [(sid, name, body, retry)] = parse(raw)
    assert (sid, name, retry) == ("42", "agent_processing_update", 3000)
    assert body == "line one\nline two\nline three\nend"


def test_sse_json_payload_survives_a_real_parser() -> None:
    payload = ev.agent_update(
        "s1",
        "r1",
        agent_id="Shadow",
        partial_content='he said "<b>hi</b>"\n',
        progress=0.25,
        turn_id="t1",
        streaming="native",
    )
    event = Event(7, EventType.AGENT_PROCESSING_UPDATE, payload)
    raw = encode_sse(event.json(), event=event.type, id=event.id)
    [(sid, name, body, _)] = parse(raw)
    assert (sid, name) == ("7", "agent_processing_update")
    assert json.loads(body) == payload


def test_comment_is_ignored_by_parsers() -> None:
    raw = encode_comment("ping") + encode_sse("x", event="e", id=1)
    assert [p[2] for p in parse(raw)] == ["x"]


def test_json_is_rendered_once() -> None:
    event = Event(1, EventType.ROUND_STARTED, {"a": 1})
    first = event.json()
    event.data["a"] = 2  # the cache is what every subscriber shares
    assert event.json() is first


@pytest.mark.parametrize("kind", list(EventType))
def test_event_types_are_the_protocol_names(kind: EventType) -> None:
    assert kind.value == str(kind)


def test_payloads_carry_session_round_type_and_timestamp() -> None:
    started = ev.agent_started(
        "s",
        "r",
        agent_id="Ego",
        agent_type="EgoAgent",
        situation="x",
        turn_id="t",
        model="m",
        interaction_count=2,
        has_memory=True,
    )
    complete = ev.agent_complete(
        "s",
        "r",
        agent_id="Ego",
        agent_type="EgoAgent",
        final_content="done",
        sentiment={"score": 0.1, "label": "neutral"},
        situation="x",
        interaction_count=3,
        has_memory=True,
        turn_id="t",
        status=TurnStatus.OK,
        streaming="native",
        model="m",
        usage={"total_tokens": 5},
        duration_ms=10,
        first_token_ms=2,
    )
    for payload in (started, complete):
        assert payload["session_id"] == "s" and payload["round_id"] == "r"
        assert payload["timestamp"].endswith("+00:00")
    assert started["metadata"] == {
        "interaction_count": 2,
        "has_memory": True,
        "turn_id": "t",
        "round_id": "r",
        "model": "m",
    }
    meta = complete["metadata"]
    for key in (
        "situation",
        "interaction_count",
        "has_memory",
        "agent_type",
        "turn_id",
        "status",
        "streaming",
        "model",
        "usage",
        "duration_ms",
        "first_token_ms",
    ):
        assert key in meta
    assert meta["status"] == "ok"


def test_merge_updates_keeps_last_id_all_text_and_last_progress() -> None:
    batch = [
        Event(
            i,
            EventType.AGENT_PROCESSING_UPDATE,
            ev.agent_update(
                "s",
                "r",
                agent_id="Self",
                partial_content=text,
                progress=p,
                turn_id="t",
                streaming="native",
            ),
        )
        for i, (text, p) in enumerate([("a ", 0.1), ("b ", 0.2), ("c", 0.3)], start=5)
    ]
    merged = ev.merge_updates(batch)
    assert merged.id == 7
    assert merged.data["partial_content"] == "a b c"
    assert merged.data["progress"] == 0.3
    assert merged.data["metadata"]["chunk_size"] == 5
    assert batch[0].data["partial_content"] == "a "  # the originals are untouched
    assert ev.merge_updates(batch[:1]) is batch[0]
