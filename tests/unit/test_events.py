from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from tests import factories as f
from tests.web.sse import from_bytes

from psyche_sse import events as ev
from psyche_sse.events import Event, EventType, encode_comment, encode_sse
from psyche_sse.plain import _adapter as plain_adapter
from psyche_sse.transcript import Status, Transcript

SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "events.schema.json"


def parse(raw: bytes) -> list[tuple[str, str, str, int | None]]:
    return [(s.id, s.event, s.data, s.retry) for s in from_bytes(raw)]


def test_sse_round_trip_with_multiline_data_id_event_and_retry() -> None:
    data = "line one\nline two\r\nline three\rend"
    raw = encode_sse(data, event="agent_processing_update", id=42, retry_ms=3000)
    [(sid, name, body, retry)] = parse(raw)
    assert (sid, name, retry) == ("42", "agent_processing_update", 3000)
    assert body == "line one\nline two\nline three\nend"


def test_sse_json_payload_survives_a_real_parser() -> None:
    event = Event(7, f.update('he said "<b>hi</b>"\n', progress=0.25))
    raw = encode_sse(event.json(), event=event.type, id=event.id)
    [(sid, name, body, _)] = parse(raw)
    assert (sid, name) == ("7", "agent_processing_update")
    assert json.loads(body) == event.data
    assert ev.parse(json.loads(body)) == event.payload


def test_comment_is_ignored_by_parsers() -> None:
    raw = encode_comment("ping") + encode_sse("x", event="e", id=1)
    assert [p[2] for p in parse(raw)] == ["x"]


def test_json_is_rendered_once() -> None:
    event = Event(1, f.round_started())
    assert event.json() is event.json()


@pytest.mark.parametrize("kind", list(EventType))
def test_event_types_are_the_protocol_names(kind: EventType) -> None:
    assert kind.value == str(kind)


def test_the_json_form_keeps_the_protocol_layout() -> None:
    """The wire form: the common fields first, the turn's facts under ``metadata``."""
    started = Event(1, f.started("t", "Ego", interaction_count=2)).data
    assert list(started)[:4] == ["type", "timestamp", "session_id", "round_id"]
    assert started["timestamp"].endswith("+00:00")
    assert started["metadata"] == {
        "interaction_count": 2,
        "has_memory": False,
        "turn_id": "t",
        "round_id": "r",
        "model": f.MODEL,
        "heard": [],
        "guidance": [],
    }
    complete = Event(2, f.complete("done", "t", agent="Ego", usage={"total_tokens": 5})).data
    meta = complete["metadata"]
    assert list(meta)[:12] == [
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
        "progress",
    ]
    assert meta["status"] == "ok" and meta["usage"] == {"total_tokens": 5}
    # Error fields are there only when the turn failed.
    assert "error" not in meta and "reasoning" not in meta
    failed = Event(3, f.complete("x", status=Status.ERROR, error="boom", error_class="E")).data
    assert failed["metadata"]["error"] == "boom" and failed["metadata"]["status"] == "error"


def test_merge_updates_keeps_last_id_all_text_and_last_progress() -> None:
    batch = f.numbered(f.update("a ", progress=0.1), f.update("b ", progress=0.2), start=5)
    batch += f.numbered(f.update("c", progress=0.3), start=7)
    merged = ev.merge_updates(batch)
    assert merged.id == 7
    payload = merged.payload
    assert isinstance(payload, ev.AgentUpdate)
    assert payload.partial_content == "a b c"
    assert payload.progress == 0.3
    assert payload.metadata.chunk_size == 5
    assert batch[0].payload.partial_content == "a "  # type: ignore[union-attr]
    assert ev.merge_updates(batch[:1]) is batch[0]


def test_events_fold_into_the_transcript_the_store_would_hold() -> None:
    events = f.numbered(
        f.round_started(situation="Passed over"),
        *f.whole_turn("one two three", "t1", "Shadow"),
        f.started("t2", "Persona"),
        f.update("half", "t2"),
    )
    transcript = Transcript.from_events("s", events)
    [round_] = transcript.rounds
    assert transcript.last_event_id == events[-1].id and transcript.running
    first, second = round_.turns
    assert (first.agent_id, first.status, first.text) == ("Shadow", Status.OK, "one two three")
    assert (second.text, second.running) == ("half", True)
    assert round_.current_turn is second

    ended = transcript.apply(Event(99, f.round_complete(status=Status.CANCELLED)))
    assert ended is round_ and round_.status is Status.CANCELLED and not transcript.running
    # The JSON form comes back whole.
    assert Transcript.from_dict(json.loads(json.dumps(transcript.to_dict()))) == transcript


def test_a_turn_whose_round_started_before_the_history_is_left_out() -> None:
    transcript = Transcript.from_events("s", f.numbered(f.started(), f.update("x")))
    assert transcript.rounds == [] and transcript.last_event_id == 2


def test_session_history_says_where_the_newest_round_stands() -> None:
    events = f.numbered(f.round_started(index=2), f.started("t1"), f.update("half", "t1"))
    transcript = Transcript.from_events("s", events)
    running = Event(3, f.history(transcript)).data
    assert (running["running"], running["round_status"]) == (True, "running")
    assert (running["round_id"], running["round_index"]) == (f.RID, 2)

    transcript.apply(Event(4, f.complete("half and whole", "t1")))
    transcript.apply(Event(5, f.round_complete(status=Status.CANCELLED)))
    ended = Event(5, f.history(transcript)).data
    assert (ended["running"], ended["round_status"], ended["round_index"]) == (
        False,
        "cancelled",
        2,
    )
    back = ev.parse(json.loads(json.dumps(ended)))
    assert isinstance(back, ev.SessionHistory) and back.round_status is Status.CANCELLED

    empty = Event(0, f.history(Transcript(id="s"))).data
    assert (empty["running"], empty["round_status"], empty["round_index"]) == (False, None, None)
    assert empty["round_id"] is None


def test_parse_rejects_what_is_not_an_event() -> None:
    with pytest.raises(ValueError):
        ev.parse({"type": "agent_processing_update", "session_id": "s"})
    with pytest.raises(ValueError):
        ev.parse({"type": "no_such_event"})


def test_the_published_schema_is_the_one_the_types_make() -> None:
    """``docs/events.schema.json`` is generated from the event classes; regenerate it with
    ``python -m psyche_sse.events > docs/events.schema.json`` when they change."""
    published = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert published == ev.schema()


def test_every_event_type_validates_and_a_broken_one_does_not() -> None:
    validator = jsonschema.Draft202012Validator(ev.schema())
    transcript = Transcript.from_events(
        "s", f.numbered(f.round_started(), *f.whole_turn("a b"), f.round_complete())
    )
    payloads = [
        f.round_started(),
        *f.whole_turn("a b"),
        f.complete("x", status=Status.ERROR, error="boom", error_class="E", partial=True),
        f.round_complete(),
        f.history(transcript),
    ]
    for i, payload in enumerate(payloads, start=1):
        validator.validate(Event(i, payload).data)
    payloads += [
        f.network(emergency=True),
        f.stimulus("My sister called back", 2),
        f.state(round_index=1),
        f.emergency(active=True),
    ]
    for i, payload in enumerate(payloads[-4:], start=len(payloads)):
        validator.validate(Event(i, payload).data)
    assert {type(p) for p in payloads} == set(ev.PAYLOADS)
    broken = Event(1, f.update("x")).data
    del broken["metadata"]["turn_id"]
    assert not validator.is_valid(broken)
    assert not validator.is_valid({**Event(1, f.round_complete()).data, "status": "running"})


def test_parsing_builds_its_validator_once() -> None:
    # Building one takes pydantic tens of milliseconds: once per process, not per event.
    payload = f.update("a")
    data = json.loads(Event(1, payload).json())
    ev.parse(data)
    built = plain_adapter.cache_info().currsize
    for _ in range(3):
        assert ev.parse(data) == payload
    assert plain_adapter.cache_info().currsize == built
