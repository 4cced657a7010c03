"""Operations against running servers: ``/metrics``, the status page, its streams."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families

from psyche_sse.metrics import CONTENT_TYPE_LATEST
from tests.live import LiveServer, serve_in_thread, stop_server
from tests.schema import check_event
from tests.waiting import wait_for
from tests.web.accounts import Team, team
from tests.web.sse import messages

OFFLINE = "psyche/offline"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The offline model at full speed; heartbeats and status updates every few tenths."""
    server = serve_in_thread(
        tmp_path_factory.mktemp("ops"),
        offline_tps="0",
        heartbeat="0.3",
        status_interval="0.2",
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """20 deltas a second: a round runs for many seconds, long enough to see it running."""
    server = serve_in_thread(
        tmp_path_factory.mktemp("ops-slow"),
        offline_tps="20",
        heartbeat="0.3",
        status_interval="0.2",
    )
    yield server
    stop_server(server)


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_reflect_a_round_that_just_ran(ops: LiveServer) -> None:
    with ops.client() as client:
        before = scrape(client)
        received = []
        with connect_sse(
            client, "POST", "/api/rounds", data={"situation": "My brother borrowed money again"}
        ) as source:
            received = list(messages(source))
        after = scrape(client)
    assert received[-1].type == "conversation_state"
    turns = [m for m in received if m.type == "agent_processing_complete"]
    assert len(turns) == 5 and all(m.data["metadata"]["status"] == "ok" for m in turns)
    streaming = {m.data["metadata"]["streaming"] for m in turns}
    assert streaming == {"native"}

    assert grew(before, after, "psyche_rounds_total", status="ok") == 1
    assert grew(before, after, "psyche_rounds_total", status="error") == 0
    labels = {"status": "ok", "model": OFFLINE, "streaming": "native"}
    assert grew(before, after, "psyche_turns_total", **labels) == 5
    for kind, count in (("round_started", 1), ("agent_processing_complete", 5)):
        assert grew(before, after, "psyche_events_published_total", type=kind) == count
    assert grew(before, after, "psyche_turn_duration_seconds_count", model=OFFLINE) == 5
    assert grew(before, after, "psyche_turn_first_token_seconds_count", model=OFFLINE) == 5
    assert grew(before, after, "psyche_turn_duration_seconds_sum", model=OFFLINE) > 0
    # This client was the round's only viewer: every delta published reached it, merged into
    # the delta messages it received.
    published = grew(before, after, "psyche_events_published_total", type="agent_processing_update")
    assert published > 0
    assert grew(before, after, "psyche_stream_deltas_total") == published
    sent = sum(m.type == "agent_processing_update" for m in received)
    assert grew(before, after, "psyche_stream_delta_messages_total") == sent
    assert value(after, "psyche_stream_delta_merge_ratio") >= 1
    assert value(after, "psyche_rounds_running") == 0
    assert value(after, "psyche_database_bytes") > 0
    assert value(after, "psyche_llm_ready") == 1
    assert value(after, "process_resident_memory_bytes") > 0


def viewers(client: httpx.Client, fmt: str) -> float:
    return value(scrape(client), "psyche_viewers", format=fmt)


def new_session(client: httpx.Client, situation: str = "A quiet week at work") -> str:
    response = client.post(
        "/api/rounds", data={"situation": situation}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 202, response.text
    session_id: str = response.json()["session_id"]
    return session_id


@pytest.mark.parametrize(
    ("path", "fmt"), [("/api/sessions/{}/events", "json"), ("/s/{}/stream", "html")]
)
def test_viewers_connected_follow_open_streams(ops: LiveServer, path: str, fmt: str) -> None:
    with ops.client() as client, ops.client() as watcher:
        session_id = new_session(client)
        start = viewers(client, fmt)
        with watcher.stream("GET", path.format(session_id)) as response:
            assert response.status_code == 200
            next(response.iter_bytes())  # the stream is open
            wait_for(lambda: viewers(client, fmt) == start + 1)
        # Closed: the server notices at its next heartbeat.
        wait_for(lambda: viewers(client, fmt) == start)


def running_round(client: httpx.Client, session_id: str) -> dict[str, Any] | None:
    status = client.get("/api/status").json()
    return next((r for r in status["rounds"] if r["session_id"] == session_id), None)


def test_the_status_has_a_running_round_its_speaker_and_viewers(slow: LiveServer) -> None:
    situation = "<script>alert(1)</script> My manager praised my rival"
    with slow.client() as client, slow.client() as watcher:
        session_id = new_session(client, situation)
        with watcher.stream("GET", f"/api/sessions/{session_id}/events") as response:
            next(response.iter_bytes())

            def speaking() -> bool:
                found = running_round(client, session_id)
                return found is not None and found["speaking"] is not None and found["viewers"] == 1

            wait_for(speaking)
            found = running_round(client, session_id)
            assert found is not None
            assert found["title"] == situation and found["index"] == 1
            assert found["speaking"] in ("Shadow", "Persona", "Anima/Animus", "Self", "Ego")
            status = client.get("/api/status")
            assert status.headers["content-type"].startswith("application/json")
            data = status.json()
            check_event(data)
            assert data["rounds_running"] >= 1 and data["viewers"] >= 1
            assert data["llm_ready"] is True
            assert data["memory_rss_bytes"] > 0 and data["database_bytes"] > 0
            (model,) = data["models"]
            assert model["model"] == OFFLINE and model["offline"] is True
            assert len(model["agents"]) == 5
            # The page escapes what a person typed.
            page = client.get("/status").text
            assert "<script>alert(1)</script>" not in page
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
            assert f'id="running-{session_id}"' in page
        assert client.post(f"/api/sessions/{session_id}/stop").json()["stopped"] is True
        wait_for(lambda: running_round(client, session_id) is None)
        assert value(scrape(client), "psyche_rounds_total", status="cancelled") >= 1


def test_the_status_stream_sends_system_status_events(ops: LiveServer) -> None:
    with ops.client() as client, ops.client() as watcher:
        start = viewers(client, "status")
        got = []
        with connect_sse(watcher, "GET", "/api/status/events") as source:
            for sse in source.iter_sse():
                if not sse.data:
                    continue
                assert sse.event == "system_status" and sse.id == ""
                data = json.loads(sse.data)
                check_event(data)
                got.append(data)
                if len(got) == 1:
                    wait_for(lambda: viewers(client, "status") == start + 1)
                if len(got) == 3:
                    break
        wait_for(lambda: viewers(client, "status") == start)
    assert [d["type"] for d in got] == ["system_status"] * 3
    assert got[0]["uptime_s"] <= got[1]["uptime_s"] <= got[2]["uptime_s"]
    assert got[0]["timestamp"] < got[2]["timestamp"]


def test_the_status_page_and_its_stream_of_fragments(ops: LiveServer) -> None:
    with ops.client() as client:
        page = client.get("/status")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'hx-sse:connect="/status/stream"' in page.text
        assert 'id="system-status"' in page.text and 'id="status-uptime"' in page.text
        with client.stream("GET", "/status/stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache, no-transform"
            for line in response.iter_lines():
                if line.startswith("data: "):
                    assert '<hx-partial hx-target="#system-status" hx-swap="innerHTML">' in line
                    break


# --- only for admins ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def crew(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """A server with accounts: alice the admin, bob and carol not."""
    with team(tmp_path_factory.mktemp("ops-crew"), offline_tps="0", heartbeat="0.5") as t:
        yield t


@pytest.mark.parametrize(
    "path", ["/metrics", "/status", "/status/stream", "/api/status", "/api/status/events"]
)
def test_operations_are_for_admins_only(crew: Team, path: str) -> None:
    with crew.token_client("bob") as client:
        response = client.get(path)
        assert response.status_code == 404
        assert "psyche_" not in response.text and "uptime" not in response.text
        # Whatever an ordinary user may do still works.
        assert client.get("/api/sessions").status_code == 200
    with crew.cookie_client("bob") as client:
        assert client.get(path).status_code == 404
        assert 'href="/status"' not in client.get("/").text  # no link to it in the bar


def test_an_admin_is_let_in_by_token_as_prometheus_scrapes(crew: Team) -> None:
    with crew.token_client("alice") as client:
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "psyche_rounds_total" in metrics.text
        assert client.get("/api/status").json()["type"] == "system_status"
    with crew.cookie_client("alice") as client:
        assert client.get("/status").status_code == 200
        assert 'href="/status"' in client.get("/").text
        assert 'href="/status"' in client.get("/sessions").text
