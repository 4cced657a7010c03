"""Small helpers for reading the raw event stream in tests."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent, connect_sse

from tests.factories import AGENT_IDS
from tests.schema import check_event


@dataclass(frozen=True)
class Msg:
    id: int
    type: str
    data: dict[str, Any]

    @property
    def turn_id(self) -> str | None:
        meta = self.data.get("metadata") or {}
        return meta.get("turn_id")


def messages(source: EventSource) -> Iterator[Msg]:
    """The stream's events.

    A message with no data is not an event (the ``retry:`` field at the start, and the
    blank line after a heartbeat comment, which httpx-sse 0.4.3 reports as one carrying
    the last id: it keeps ``id`` across messages, as the spec's last-event-id buffer).
    """
    for sse in source.iter_sse():
        if not sse.data:
            continue
        yield parse(sse)


def from_bytes(raw: bytes) -> list[ServerSentEvent]:
    """SSE bytes read back with httpx-sse, as a client would (comments and the ``retry:``
    field included as httpx-sse reports them)."""
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)
    return list(EventSource(response).iter_sse())


def parse(sse: ServerSentEvent) -> Msg:
    """The event, checked against the published schema (``docs/events.schema.json``)."""
    data = json.loads(sse.data)
    assert data["type"] == sse.event, (data["type"], sse.event)
    check_event(data)
    return Msg(int(sse.id), sse.event, data)


ROUND_END = "conversation_state"
"""A round's last event: the conversation's state, after its ``round_complete``."""


def until_round_complete(source: EventSource) -> list[Msg]:
    """The stream's events to the end of a round (its ``conversation_state``)."""
    out: list[Msg] = []
    for msg in messages(source):
        out.append(msg)
        if msg.type == ROUND_END:
            break
    return out


def start_round(client: httpx.Client, situation: str, **fields: Any) -> dict[str, Any]:
    """Start a round without following it: the 202 answer."""
    response = client.post(
        "/api/rounds",
        json={"situation": situation, **fields},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def round_over(history: Msg) -> bool:
    """Whether a ``session_history`` shows the session's newest round over: finished, with
    its state (or cut off by a crash)."""
    rounds = history.data["transcript"]["rounds"]
    if not rounds:
        return False
    last = rounds[-1]
    return last["status"] == "interrupted" or (last["status"] != "running" and last["state"])


def follow_round(
    client: httpx.Client, url: str, *, reconnects: int = 20, **headers: str
) -> list[Msg]:
    """Everything until the round's end (its ``conversation_state``), followed as a browser
    does: when the
    stream ends first, connect again with the last id seen; a ``session_history`` (sent
    when the server cannot replay from that id) stands for what came before it, and ends
    the round when it shows the round finished."""
    out: list[Msg] = []
    for _ in range(reconnects):
        with connect_sse(client, "GET", url, headers=headers) as source:
            for msg in messages(source):
                out.append(msg)
                headers["Last-Event-ID"] = str(msg.id)
                if msg.type == ROUND_END:
                    return out
                if msg.type == "session_history" and round_over(msg):
                    return out
    raise AssertionError(f"the round did not complete in {reconnects} connections")


def run_round(client: httpx.Client, situation: str, **fields: Any) -> list[Msg]:
    """Start a round and read its stream (``POST /api/rounds``) to the end, which comes
    with the round's ``conversation_state``: in process too, where a response ends or
    waits."""
    body = {"situation": situation, **fields}
    with connect_sse(client, "POST", "/api/rounds", json=body) as source:
        return list(messages(source))


def finished_session(client: httpx.Client, situation: str) -> str:
    """A new session with one round, run to its end: its id."""
    msgs = run_round(client, situation)
    assert msgs[-1].type == ROUND_END, msgs[-1]
    session_id: str = msgs[0].data["session_id"]
    return session_id


def texts(msgs: Iterable[Msg]) -> dict[str, str]:
    """Each turn's streamed text: its deltas concatenated."""
    out: dict[str, str] = defaultdict(str)
    for msg in msgs:
        if msg.type == "agent_processing_update":
            out[msg.turn_id or ""] += msg.data["partial_content"]
    return dict(out)


def finals(msgs: Iterable[Msg]) -> dict[str, dict[str, Any]]:
    return {m.turn_id or "": m.data for m in msgs if m.type == "agent_processing_complete"}


# Around a round: who hears whom (at a run's start) and stimuli before it; after its
# round_complete, emergency mode's switch and the paths it changes, then the conversation's
# state, the round's last event.
BEFORE_ROUND = ("network_update", "stimulus_injected")
AFTER_ROUND = ("emergency_status", "network_update", "conversation_state")


def the_round(msgs: list[Msg]) -> list[Msg]:
    """A round's events from its ``round_started`` to its ``round_complete``."""
    kinds = [m.type for m in msgs]
    return msgs[kinds.index("round_started") : kinds.index("round_complete") + 1]


def assert_whole_round(msgs: list[Msg]) -> list[Msg]:
    """The order and the guarantees of SPEC §3 for one round of five turns (and what comes
    around it); returns the round from its ``round_started`` to its ``round_complete``."""
    ids = [m.id for m in msgs]
    assert ids == sorted(set(ids)), "ids strictly increasing, no duplicate"
    msgs = list(msgs)
    while msgs and msgs[0].type in BEFORE_ROUND:
        msgs = msgs[1:]
    tail: list[Msg] = []
    while msgs and msgs[-1].type in AFTER_ROUND:
        tail.insert(0, msgs.pop())
    if tail:
        assert tail[-1].type == "conversation_state", [m.type for m in tail]
    assert msgs[0].type == "round_started"
    assert msgs[-1].type == "round_complete"
    round_id = msgs[0].data["round_id"]
    session_id = msgs[0].data["session_id"]
    for m in msgs + tail:
        assert m.data["session_id"] == session_id
        assert m.data["round_id"] == round_id
    started = [m for m in msgs if m.type == "agent_processing_started"]
    assert [m.data["agent_id"] for m in started] == list(AGENT_IDS)
    streamed = texts(msgs)
    for turn_id, final in finals(msgs).items():
        assert final["metadata"]["status"] == "ok"
        assert streamed[turn_id] == final["final_content"]
    # Within a turn: started, then deltas with progress never decreasing, then complete.
    current: str | None = None
    progress = 0.0
    for m in msgs[1:-1]:
        if m.type == "agent_processing_started":
            assert current is None
            current, progress = m.turn_id, 0.0
        elif m.type == "agent_processing_update":
            assert m.turn_id == current
            assert m.data["progress"] >= progress
            assert m.data["metadata"]["chunk_size"] == len(m.data["partial_content"])
            progress = m.data["progress"]
        elif m.type == "agent_processing_complete":
            assert m.turn_id == current
            current = None
    assert current is None
    return msgs
