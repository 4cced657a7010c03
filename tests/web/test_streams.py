"""Live streams against a paced server: resuming, several viewers, slow ones, leaving, Stop."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

import httpx
from httpx_sse import connect_sse

from tests.factories import AGENT_IDS
from tests.live import LiveServer
from tests.web.sse import (
    Msg,
    assert_whole_round,
    finals,
    follow_round,
    messages,
    start_round,
    texts,
)

# The server's default: max_deltas_per_second = 30.
MAX_PER_SECOND = 30


def read_until(
    client: httpx.Client, url: str, stop: object, headers: dict[str, str] | None = None
) -> list[Msg]:
    """Read the stream until ``stop(msgs)`` is true, then hang up."""
    out: list[Msg] = []
    with connect_sse(client, "GET", url, headers=headers or {}) as source:
        for msg in messages(source):
            out.append(msg)
            if stop(out):  # type: ignore[operator]
                break
    return out


def rest_of_round(stream: Iterator[Msg]) -> list[Msg]:
    out: list[Msg] = []
    for msg in stream:
        out.append(msg)
        if msg.type == "round_complete":
            break
    return out


def mid_turn(agent: str, updates: int) -> object:
    def stop(msgs: list[Msg]) -> bool:
        n = sum(
            1 for m in msgs if m.type == "agent_processing_update" and m.data["agent_id"] == agent
        )
        return n >= updates

    return stop


def test_reconnecting_mid_turn_has_no_gap_and_no_duplicate(paced_server: LiveServer) -> None:
    with paced_server.client() as client:
        body = start_round(client, "My manager took credit for my work")
        url = body["events_url"]
        first = read_until(client, url, mid_turn("Persona", 3))
        assert first[-1].type == "agent_processing_update"
        # As a browser reconnects: the same URL, and the last id it saw in Last-Event-ID.
        second = read_until(
            client, url, mid_turn("Self", 2), headers={"Last-Event-ID": str(first[-1].id)}
        )
        assert second[0].id > first[-1].id
        # As a script resumes: ?after=.
        after = f"/api/sessions/{body['session_id']}/events?after={second[-1].id}"
        third = follow_round(client, after)
    assert_whole_round(first + second + third)


def test_several_viewers_fast_stalled_and_late(paced_server: LiveServer) -> None:
    """Two viewers see the same round; a stalled one holds up nobody and misses nothing;
    no viewer gets more than about 30 messages a second per turn; a late one gets each
    finished turn as one delta."""
    with paced_server.client() as client:
        body = start_round(client, "We are moving to another city")
        url = body["events_url"]
        results: dict[str, list[Msg]] = {}
        arrivals: dict[str, list[float]] = defaultdict(list)
        a_done = threading.Event()

        def fast(name: str) -> None:
            with paced_server.client() as own, connect_sse(own, "GET", url) as source:
                msgs = results[name] = []
                for msg in messages(source):
                    msgs.append(msg)
                    if name == "a" and msg.type == "agent_processing_update":
                        arrivals[msg.turn_id or ""].append(time.monotonic())
                    if msg.type == "round_complete":
                        break
            if name == "a":
                a_done.set()

        def stalled() -> None:
            with paced_server.client() as own, connect_sse(own, "GET", url) as source:
                msgs = results["stalled"] = []
                for msg in messages(source):
                    msgs.append(msg)
                    if len(msgs) == 1:
                        # Stop reading until the fast viewer has seen the whole round.
                        assert a_done.wait(30), "a stalled viewer held up another one"
                    if msg.type == "round_complete":
                        break

        threads = [
            threading.Thread(target=fast, args=("a",)),
            threading.Thread(target=fast, args=("b",)),
            threading.Thread(target=stalled),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert a_done.is_set()
        late = follow_round(client, f"/api/sessions/{body['session_id']}/events")
    a, b, stalled_msgs = results["a"], results["b"], results["stalled"]
    for msgs in (a, b, stalled_msgs, late):
        assert_whole_round(msgs)
        assert texts(msgs) == texts(a)
    # Every event but the (possibly differently merged) deltas is the very same event.
    assert [m for m in a if m.type != "agent_processing_update"] == [
        m for m in b if m.type != "agent_processing_update"
    ]
    assert len(arrivals) == 5
    for times in arrivals.values():
        busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
        assert busiest <= MAX_PER_SECOND * 1.2, busiest
    counts = Counter(m.turn_id for m in late if m.type == "agent_processing_update")
    assert set(counts.values()) == {1}


def test_a_round_keeps_running_when_its_viewer_leaves(paced_server: LiveServer) -> None:
    with paced_server.client() as client:
        with connect_sse(client, "POST", "/api/rounds", json={"situation": "Nobody listens"}) as s:
            seen: list[Msg] = []
            for msg in messages(s):
                seen.append(msg)
                if msg.type == "agent_processing_update":
                    break  # hang up mid-turn
        session_id = seen[0].data["session_id"]
        url = f"/api/sessions/{session_id}/events"
        msgs = follow_round(client, url)
        session = client.get(f"/api/sessions/{session_id}").json()
    assert_whole_round(msgs)
    assert session["running"] is False
    assert [r["id"] for r in session["rounds"]] == [seen[0].data["round_id"]]


def test_stop_cancels_the_round_and_its_turn_completes(paced_server: LiveServer) -> None:
    with paced_server.client() as client:
        body = start_round(client, "Stop me")
        session_id = body["session_id"]
        with connect_sse(client, "GET", body["events_url"]) as source:
            msgs: list[Msg] = []
            stream = messages(source)
            for msg in stream:
                msgs.append(msg)
                if msg.type == "agent_processing_update" and msg.data["agent_id"] == "Persona":
                    response = client.post(f"/api/sessions/{session_id}/stop")
                    assert response.json()["stopped"] is True
                    break
            msgs += rest_of_round(stream)
        again = client.post(f"/api/sessions/{session_id}/stop")
    assert again.json()["stopped"] is False
    assert msgs[-1].type == "round_complete"
    assert msgs[-1].data["status"] == "cancelled"
    done = finals(msgs)
    statuses = {d["agent_id"]: d["metadata"]["status"] for d in done.values()}
    assert statuses == {"Shadow": "ok", "Persona": "cancelled"}
    persona = next(d for d in done.values() if d["agent_id"] == "Persona")
    assert persona["final_content"] == texts(msgs)[persona["metadata"]["turn_id"]]


def test_stop_one_turn_and_the_round_goes_on(paced_server: LiveServer) -> None:
    with paced_server.client() as client:
        body = start_round(client, "Skip the mask")
        session_id = body["session_id"]
        with connect_sse(client, "GET", body["events_url"]) as source:
            msgs: list[Msg] = []
            stream = messages(source)
            for msg in stream:
                msgs.append(msg)
                if msg.type == "agent_processing_update" and msg.data["agent_id"] == "Persona":
                    response = client.post(
                        f"/api/sessions/{session_id}/stop", data={"turn_id": msg.turn_id}
                    )
                    assert response.json()["stopped"] is True
                    break
            msgs += rest_of_round(stream)
    statuses = [d["metadata"]["status"] for d in finals(msgs).values()]
    assert statuses == ["ok", "cancelled", "ok", "ok", "ok"]
    assert [m.data["agent_id"] for m in msgs if m.type == "agent_processing_started"] == list(
        AGENT_IDS
    )
    assert msgs[-1].type == "round_complete"


def test_a_second_round_while_one_runs_is_a_409(paced_server: LiveServer) -> None:
    with paced_server.client() as client:
        body = start_round(client, "One at a time")
        response = client.post(
            "/api/rounds", json={"situation": "And another", "session_id": body["session_id"]}
        )
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "round_in_progress"
        client.post(f"/api/sessions/{body['session_id']}/stop")
