"""The JSON/SSE API against a real server: a whole round, its headers, and every 4xx."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import pytest
from httpx_sse import connect_sse

from tests.live import LiveServer
from tests.web.sse import (
    assert_whole_round,
    finished_session,
    follow_round,
    messages,
    start_round,
    until_round_complete,
)


def test_health(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_post_round_streams_the_whole_round_and_ends(fast_server: LiveServer) -> None:
    with (
        fast_server.client() as client,
        connect_sse(
            client, "POST", "/api/rounds", data={"situation": "I was passed over"}
        ) as source,
    ):
        response = source.response
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache, no-transform"
        assert response.headers["x-accel-buffering"] == "no"
        session_id = response.headers["x-session-id"]
        msgs = list(messages(source))  # the stream ends by itself after the round's state
    assert [m.type for m in msgs][-1] == "conversation_state"
    assert msgs[0].type == "network_update"  # who hears whom, as the run starts
    msgs = assert_whole_round(msgs)
    assert msgs[0].data["session_id"] == session_id
    assert msgs[0].data["situation"] == "I was passed over"
    started = msgs[1].data
    assert started["agent_type"] == "ShadowAgent"
    assert set(started["metadata"]) >= {
        "interaction_count",
        "has_memory",
        "turn_id",
        "round_id",
        "model",
    }
    complete = next(m.data for m in msgs if m.type == "agent_processing_complete")
    assert set(complete["sentiment"]) >= {"score", "label"}
    assert complete["metadata"]["progress"] == 1.0
    assert set(complete["metadata"]) >= {
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
    }


def test_json_body_and_a_second_round_in_the_same_session(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        with connect_sse(
            client, "POST", "/api/rounds", json={"situation": "My sister ignores me"}
        ) as source:
            first = until_round_complete(source)
        session_id = first[0].data["session_id"]
        with connect_sse(
            client,
            "POST",
            "/api/rounds",
            json={"situation": "She called today", "session_id": session_id},
        ) as source:
            second = until_round_complete(source)
    assert second[0].id > first[-1].id
    second = assert_whole_round(second)
    assert second[0].data["session_id"] == session_id
    assert second[0].data["index"] == 2
    assert second[1].data["metadata"]["has_memory"] is True


def test_accept_json_gets_202_and_where_to_follow(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        body = start_round(client, "A friend forgot my birthday")
        assert set(body) == {"session_id", "round_id", "events_url"}
        msgs = follow_round(client, body["events_url"])
        session = client.get(f"/api/sessions/{body['session_id']}").json()
    assert session["last_event_id"] == msgs[-1].id
    msgs = assert_whole_round(msgs)
    assert msgs[0].data["round_id"] == body["round_id"]
    assert [r["id"] for r in session["rounds"]] == [body["round_id"]]


def test_curl_shows_a_whole_round_live(fast_server: LiveServer) -> None:
    done = subprocess.run(
        ["curl", "-sSN", "-d", "situation=I lost my keys again", f"{fast_server.url}/api/rounds"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = done.stdout
    assert out.startswith("retry: ")
    assert out.count("event: agent_processing_complete\n") == 5
    assert "event: round_complete\n" in out
    # The last message is the round's state: curl returned because the stream ended there.
    last = out.rstrip("\n").split("\n\n")[-1]
    assert "event: conversation_state" in last


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"data": {"situation": ""}}, 400, "situation"),
        ({"data": {"situation": "   \n  "}}, 400, "empty"),
        ({"json": {"situation": "x" * 4001}}, 400, "too long"),
        ({"json": {"situation": 42}}, 400, "string"),
        ({"json": ["not", "an", "object"]}, 400, "object"),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
        ({"content": b"situation", "headers": {"Content-Type": "text/plain"}}, 415, "JSON"),
        ({"json": {"situation": "hi", "session_id": "nope"}}, 404, "session"),
        ({"json": {"situation": "hi", "rounds": 99}}, 400, "rounds"),
    ],
)
def test_bad_input_is_a_4xx_with_a_json_error(
    fast_server: LiveServer, kwargs: dict[str, object], status: int, needle: str
) -> None:
    with fast_server.client() as client:
        response = client.post("/api/rounds", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    error = response.json()["error"]
    assert error["status"] == status
    assert needle.lower() in error["message"].lower()
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/sessions/nope", 404),
        ("GET", "/api/sessions/nope/events", 404),
        ("POST", "/api/sessions/nope/stop", 404),
        ("GET", "/api/nothing-here", 404),
        ("DELETE", "/api/rounds", 405),
    ],
)
def test_api_errors_are_json(fast_server: LiveServer, method: str, path: str, status: int) -> None:
    with fast_server.client() as client:
        response = client.request(method, path)
    assert response.status_code == status
    assert response.json()["error"]["status"] == status


@pytest.mark.parametrize("bad", ["yesterday", "²", "-1", "1e3", "9" * 19])
def test_bad_last_event_id_is_a_400(fast_server: LiveServer, bad: str) -> None:
    with fast_server.client() as client:
        body = start_round(client, "Bad ids")
        response = client.get(body["events_url"], headers={"Last-Event-ID": bad.encode()})
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["error"]["message"]


def test_pages_render_errors_as_html(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        missing = client.get("/no/such/page")
        session = client.get("/s/no-such-session")
    for response in (missing, session):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "<h1>Not found</h1>" in response.text
        assert "Traceback" not in response.text


def test_a_heartbeat_keeps_an_idle_stream_open(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        body = start_round(client, "Quiet please")
        msgs = follow_round(client, body["events_url"])
        url = f"/api/sessions/{body['session_id']}/events?after={msgs[-1].id}"
        with client.stream("GET", url, timeout=httpx.Timeout(5.0)) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry: ")
            seen = [line for line, _ in zip(lines, range(4), strict=False)]
    assert ": heartbeat" in seen


def head(server: LiveServer, path: str) -> tuple[bytes, float]:
    """What a HEAD request gets, and how long the server took to close the connection
    (it is asked to, once the response is over); fails when it has not within 5 s."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        began = time.monotonic()
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):  # b"" once the server has closed it
            received += chunk
        return received, time.monotonic() - began


@pytest.mark.parametrize("route", ["/api/sessions/{sid}/events", "/s/{sid}/stream"])
def test_head_on_an_event_stream_gets_the_headers_and_ends(
    fast_server: LiveServer, route: str
) -> None:
    with fast_server.client() as client:
        sid = finished_session(client, "Only the headers, please")
    # A quiet session's stream: a GET would stay open for its next events.
    response, took = head(fast_server, route.format(sid=sid))
    status, _, rest = response.partition(b"\r\n")
    assert status == b"HTTP/1.1 200 OK"
    assert b"content-type: text/event-stream" in rest.lower()
    assert rest.endswith(b"\r\n\r\n")  # headers, no body
    assert took < 5
