"""``session_history`` says plainly where the session's newest round stands: a client that
comes back with an id the server cannot replay from learns whether that round is still
running, and how it ended, from the event itself."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import connect_sse

from tests.live import LiveServer, serve_in_thread, stop_server
from tests.schema import check_event
from tests.web.sse import ROUND_END, Msg, follow_round, messages, start_round

BEYOND = "999999"  # an id after the newest: the bus cannot replay from it


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = serve_in_thread(tmp_path_factory.mktemp("fast"), offline_tps="0", history_events="100")
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Turns that take seconds: a round still runs while a test looks at it."""
    server = serve_in_thread(tmp_path_factory.mktemp("paced"), offline_tps="10")
    yield server
    stop_server(server)


def history(client: httpx.Client, session_id: str, last_event_id: str) -> Msg:
    """The first message of the session's stream for a client that last saw
    ``last_event_id``."""
    url = f"/api/sessions/{session_id}/events"
    with connect_sse(client, "GET", url, headers={"Last-Event-ID": last_event_id}) as source:
        first = next(messages(source))
    assert first.type == "session_history", first
    check_event(first.data)
    return first


@pytest.mark.parametrize("last_seen", [BEYOND, "1"])  # beyond the newest; older than kept
def test_a_client_back_after_the_round_ended_learns_it_finished_ok(
    fast: LiveServer, last_seen: str
) -> None:
    with fast.client() as client:
        body = start_round(client, "I <b>finally</b> said no")
        done = follow_round(client, body["events_url"])
        assert done[-1].type == ROUND_END and done[-1].id > 100
        msg = history(client, body["session_id"], last_seen)
    data = msg.data
    assert data["running"] is False
    assert data["round_status"] == "ok"
    assert data["round_id"] == body["round_id"]
    assert data["round_index"] == 1
    assert msg.id == done[-1].id == data["last_event_id"]


def test_a_client_back_during_a_round_learns_it_runs_then_how_it_ended(
    paced: LiveServer,
) -> None:
    with paced.client() as client:
        body = start_round(client, "The contract arrives tomorrow")
        session_id = body["session_id"]
        with connect_sse(client, "GET", body["events_url"]) as source:
            for msg in messages(source):  # the round is under way once a turn streams
                if msg.type == "agent_processing_update":
                    break
        during = history(client, session_id, BEYOND).data
        assert client.post(f"/api/sessions/{session_id}/stop").status_code == 200
        follow_round(client, body["events_url"])
        after = history(client, session_id, BEYOND).data
    assert (during["running"], during["round_status"]) == (True, "running")
    assert (during["round_id"], during["round_index"]) == (body["round_id"], 1)
    assert (after["running"], after["round_status"]) == (False, "cancelled")
    assert after["round_id"] == body["round_id"]
