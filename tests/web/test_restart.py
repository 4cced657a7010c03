"""Coming back to a stream the server can no longer replay: after a crash and a restart on
the same database, or from an id older than the events kept in memory.

The client gets one ``session_history`` message (the whole conversation as stored, with the
id of the last event it reflects), then the live events after that id: no error, no gap,
no duplicate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.live import LiveServer, kill_server, serve_in_thread, start_server, stop_server
from tests.saved import saved_partial
from tests.web.sse import (
    ROUND_END,
    Msg,
    assert_whole_round,
    follow_round,
    messages,
    start_round,
    texts,
    until_round_complete,
)

SITUATION = "The server <i>died</i> while Shadow spoke"


def landmarks(msgs: list[Msg]) -> list[tuple[int, str]]:
    return [(m.id, m.type) for m in msgs if m.type != "agent_processing_update"]


def rest_of_round(stream: Iterator[Msg]) -> list[Msg]:
    """The stream's events to the end of the round (its conversation_state)."""
    out = []
    for msg in stream:
        out.append(msg)
        if msg.type == ROUND_END:
            break
    return out


def html_messages(response: httpx.Response) -> Iterator[tuple[int, str]]:
    """The page stream's messages with an id: (id, the HTML of its data lines)."""
    buffer = ""
    for chunk in response.iter_text():
        buffer += chunk
        while "\n\n" in buffer:
            message, buffer = buffer.split("\n\n", 1)
            fields = [line.split(": ", 1) for line in message.split("\n") if ": " in line]
            ids = [v for k, v in fields if k == "id"]
            if ids:
                yield int(ids[0]), "\n".join(v for k, v in fields if k == "data")


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A round SIGKILLed in Shadow's turn after a partial text was saved, and a server
    started again on the same database; what the client had seen before the crash."""
    where = tmp_path_factory.mktemp("crash")
    before = start_server(where, offline_tps="15")
    seen: list[Msg] = []
    try:
        with before.client() as client:
            body = start_round(client, SITUATION)
            with connect_sse(client, "GET", body["events_url"]) as source:
                for msg in messages(source):
                    seen.append(msg)
                    if msg.type == "agent_processing_update" and saved_partial(where / "psyche.db"):
                        break
    finally:
        kill_server(before)
    server = serve_in_thread(where, offline_tps="0")
    try:
        yield {"server": server, "seen": seen, **body}
    finally:
        stop_server(server)


@pytest.mark.slow
def test_the_page_shows_the_interrupted_turn_with_its_text(crashed: dict[str, Any]) -> None:
    seen: list[Msg] = crashed["seen"]
    with crashed["server"].client() as client:
        page = client.get(f"/s/{crashed['session_id']}")
        session = client.get(f"/api/sessions/{crashed['session_id']}").json()
        listed = client.get("/api/sessions").json()["sessions"]
    (round_,) = session["rounds"]
    assert round_["status"] == "interrupted"
    (shadow,) = round_["turns"]
    assert shadow["status"] == "interrupted" and shadow["text"]
    streamed = "".join(texts(seen).values())
    # Both are the start of what Shadow said: at most a couple of seconds were lost.
    assert streamed.startswith(shadow["text"]) or shadow["text"].startswith(streamed)
    assert session["last_event_id"] > seen[-1].id
    assert listed[0]["id"] == crashed["session_id"]
    assert listed[0]["last_status"] == "interrupted"

    assert page.status_code == 200
    assert "turn-final turn-interrupted" in page.text
    assert 'class="tag tag-interrupted">interrupted<' in page.text
    assert "The server stopped while Shadow was answering" in page.text
    assert "Round interrupted: the server stopped during it." in page.text
    assert "The server &lt;i&gt;died&lt;/i&gt; while Shadow spoke" in page.text
    assert "<fieldset>" in page.text  # nothing runs: the form is on
    assert f"stream?after={session['last_event_id']}" in page.text


@pytest.mark.slow
def test_the_page_stream_from_before_the_crash_renders_the_history_again(
    crashed: dict[str, Any],
) -> None:
    last_seen = crashed["seen"][-1].id
    url = f"/s/{crashed['session_id']}/stream?after=3"
    with (
        crashed["server"].client() as client,
        client.stream("GET", url, headers={"Last-Event-ID": str(last_seen)}) as response,
    ):
        assert response.status_code == 200
        first_id, html = next(html_messages(response))
    assert first_id > last_seen
    assert html.startswith('<hx-partial hx-target="#rounds" hx-swap="innerHTML">')
    assert "turn-final turn-interrupted" in html
    assert "turn-live" not in html  # the streaming card the page had is replaced
    assert 'hx-target="#composer" hx-swap="outerHTML"' in html
    assert "<fieldset>" in html


@pytest.mark.slow
def test_the_raw_stream_from_before_the_crash_gets_the_history_then_live_events(
    crashed: dict[str, Any],
) -> None:
    server: LiveServer = crashed["server"]
    session_id = crashed["session_id"]
    last_seen = crashed["seen"][-1].id
    with (
        server.client() as client,
        connect_sse(
            client,
            "GET",
            f"/api/sessions/{session_id}/events",
            headers={"Last-Event-ID": str(last_seen)},
        ) as source,
    ):
        stream = messages(source)
        history = next(stream)
        second = start_round(client, "And after the restart?", session_id=session_id)
        live = rest_of_round(stream)
        # Reconnecting from the history's id replays exactly the new round.
        again = follow_round(
            client,
            f"/api/sessions/{session_id}/events",
            **{"Last-Event-ID": str(history.id)},
        )
    assert history.type == "session_history"
    assert history.id > last_seen
    assert history.data["session_id"] == session_id
    assert history.data["round_id"] == crashed["round_id"]
    assert history.data["last_event_id"] == history.id
    transcript = history.data["transcript"]
    assert transcript["id"] == session_id
    (round_,) = transcript["rounds"]
    assert round_["status"] == "interrupted"
    assert round_["turns"][0]["status"] == "interrupted"

    assert live[0].id == history.id + 1 and live[0].type == "network_update"
    # The same events (deltas may be merged differently: a replay reads them all at once).
    assert texts(again) == texts(live)
    assert landmarks(again) == landmarks(live)
    round_ = assert_whole_round(live)
    assert round_[0].data["round_id"] == second["round_id"]
    assert round_[0].data["index"] == 2
    assert round_[1].data["metadata"]["has_memory"] is True  # Shadow remembers its partial


@pytest.mark.slow
def test_a_client_from_after_the_restart_is_not_sent_the_history_again(
    crashed: dict[str, Any],
) -> None:
    server: LiveServer = crashed["server"]
    session_id = crashed["session_id"]
    with server.client() as client:
        last = client.get(f"/api/sessions/{session_id}").json()["last_event_id"]
        url = f"/api/sessions/{session_id}/events"
        with connect_sse(client, "GET", url, headers={"Last-Event-ID": str(last)}) as source:
            start_round(client, "Once more", session_id=session_id)
            first = next(messages(source))
    assert first.type == "network_update"
    assert first.id == last + 1


# --- older than the memory holds -----------------------------------------------------------


@pytest.fixture(scope="module")
def short_memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that keeps only the last 100 events of a session in memory."""
    server = serve_in_thread(
        tmp_path_factory.mktemp("short"), offline_tps="0", history_events="100", heartbeat="0.3"
    )
    yield server
    stop_server(server)


def test_an_id_older_than_the_memory_gets_the_history_from_the_store(
    short_memory: LiveServer,
) -> None:
    with short_memory.client() as client:
        with connect_sse(client, "POST", "/api/rounds", json={"situation": "A long round"}) as s:
            first_round = until_round_complete(s)
        session_id = first_round[0].data["session_id"]
        last = first_round[-1].id
        assert last > 100
        url = f"/api/sessions/{session_id}/events"
        # Within what the memory holds: a plain replay, no history.
        with connect_sse(client, "GET", f"{url}?after={last - 3}") as source:
            stream = messages(source)
            replay = [next(stream) for _ in range(3)]
        with connect_sse(client, "GET", url) as source:  # from the start: id 0
            stream = messages(source)
            history = next(stream)
            start_round(client, "More", session_id=session_id)
            live = rest_of_round(stream)
        page = client.get(f"/s/{session_id}")
    assert history.type == "session_history" and history.id == last
    (round_,) = history.data["transcript"]["rounds"]
    assert round_["status"] == "ok" and len(round_["turns"]) == 5
    assert live[0].id == last + 1 and live[0].type == "network_update"
    assert [m.id for m in replay] == [last - 2, last - 1, last]
    assert page.text.count("turn-final turn-ok") == 10


def test_an_id_beyond_the_newest_gets_the_history(short_memory: LiveServer) -> None:
    with short_memory.client() as client:
        body = start_round(client, "From the future")
        done = follow_round(client, body["events_url"])
        url = f"/api/sessions/{body['session_id']}/events"
        with connect_sse(client, "GET", url, headers={"Last-Event-ID": "999999"}) as source:
            history = next(messages(source))
    assert history.type == "session_history"
    assert history.id == done[-1].id
    assert json.dumps(history.data["transcript"]).count('"status": "ok"') == 6
