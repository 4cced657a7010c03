"""Runs of several rounds over HTTP: a stimulus injected while a run goes on, continuing a
finished session, and what bad input gets."""

from __future__ import annotations

from typing import Any

import pytest
from httpx_sse import connect_sse

from tests.inprocess import InProcess
from tests.live import LiveServer
from tests.web.sse import ROUND_END, Msg, messages, run_round, start_round

STIMULUS = "My sister texted: we need to talk"


def test_a_stimulus_during_a_run_opens_the_next_round(paced_server: LiveServer) -> None:
    with paced_server.client() as client:
        body = start_round(client, "My sister stopped calling me", rounds=2)
        session_id = body["session_id"]
        with connect_sse(client, "GET", body["events_url"]) as source:
            stream = messages(source)
            seen: list[Msg] = []
            for msg in stream:  # the first words of round 1
                seen.append(msg)
                if msg.type == "agent_processing_update":
                    break
            response = client.post(
                f"/api/sessions/{session_id}/stimulus", json={"text": f"  {STIMULUS} "}
            )
            stop = f"/api/sessions/{session_id}/stop"
            first = seen[-1].data["metadata"]["turn_id"]
            client.post(stop, json={"turn_id": first})  # round 1 need not be heard out
            for msg in stream:  # to the first turn of round 2, which answers it
                seen.append(msg)
                if msg.type != "agent_processing_started":
                    continue
                if msg.data["round_id"] != seen[1].data["round_id"]:
                    break
                client.post(stop, json={"turn_id": msg.data["metadata"]["turn_id"]})
            client.post(stop)  # the rest is not needed
        session = client.get(f"/api/sessions/{session_id}").json()
    assert response.status_code == 202
    assert response.json() == {"session_id": session_id, "round": 2, "text": STIMULUS}
    [injected] = [m for m in seen if m.type == "stimulus_injected"]
    starts = [m for m in seen if m.type == "round_started"]
    assert injected.data["text"] == STIMULUS and injected.data["round"] == 2
    assert injected.data["round_id"] == starts[1].data["round_id"]
    assert seen.index(injected) < seen.index(starts[1])
    # Round 2's situation starts with it, word for word; round 1's does not have it.
    assert starts[1].data["stimulus"] == STIMULUS
    assert starts[1].data["situation"].startswith(STIMULUS + "\n\n")
    assert STIMULUS not in starts[0].data["situation"]
    assert session["rounds"][1]["stimulus"] == STIMULUS
    # The agents answer it: it is in the situation their prompts get.
    assert seen[-1].data["situation"].startswith(STIMULUS)
    assert seen[-1].data["round_id"] == starts[1].data["round_id"]


def test_a_stimulus_with_no_run_going_opens_the_next_round_started(app: InProcess) -> None:
    with app.client() as client:
        first = run_round(client, "I keep putting off my thesis")
        session_id = first[0].data["session_id"]
        response = client.post(f"/api/sessions/{session_id}/stimulus", data={"text": STIMULUS})
        second = run_round(client, "And now the deadline moved", session_id=session_id)
    assert response.status_code == 202 and response.json()["round"] == 2
    [started] = [m for m in second if m.type == "round_started"]
    assert started.data["situation"] == f"{STIMULUS}\n\nAnd now the deadline moved"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"json": {"text": ""}}, 400, "'text' is required"),
        ({"json": {"text": "   "}}, 400, "needs some text"),
        ({"json": {"text": "x" * 501}}, 400, "too long"),
        ({"json": {"text": 5}}, 400, "must be a string"),
        ({"json": {}}, 400, "'text' is required"),
        ({"content": b"not json", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
    ],
)
def test_a_bad_stimulus_gets_a_clear_4xx(
    app: InProcess, body: dict[str, Any], status: int, needle: str
) -> None:
    with app.client() as client:
        msgs = run_round(client, "A stimulus that is not one")
        session_id = msgs[0].data["session_id"]
        response = client.post(f"/api/sessions/{session_id}/stimulus", **body)
        unknown = client.post("/api/sessions/nosuchsession/stimulus", json={"text": "hi"})
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]
    assert unknown.status_code == 404


def test_continue_goes_on_from_where_the_council_left_it(app: InProcess) -> None:
    with app.client() as client:
        first = run_round(client, "I can't decide whether to move abroad")
        session_id = first[0].data["session_id"]
        more = run_round(client, "", session_id=session_id, rounds=2)
        empty = client.post("/api/rounds", json={})
    starts = [m.data for m in more if m.type == "round_started"]
    assert [(s["index"], s["run_index"], s["rounds"]) for s in starts] == [(2, 1, 2), (3, 2, 2)]
    for started in starts:
        assert started["situation"].startswith("I can't decide whether to move abroad\n\n")
        assert started["left_off"].startswith("Ego closed the last round with")
    assert more[-1].type == ROUND_END and more[-1].data["round"] == 3
    assert empty.status_code == 400


def test_the_page_runs_rounds_and_continues(app: InProcess) -> None:
    with app.client() as client:
        response = client.post(
            "/rounds", data={"situation": "My partner wants a child", "rounds": "2"}
        )
        assert response.status_code == 303
        page_url = response.headers["location"]
        session_id = page_url.rsplit("/", 1)[-1]
        events = f"/api/sessions/{session_id}/events"
        done = client.get(f"/api/sessions/{session_id}").json()
        bad = client.post("/rounds", data={"situation": "x", "rounds": "21"})
    assert page_url.startswith("/s/")
    assert events and done["id"] == session_id
    assert bad.status_code == 400 and "rounds" in bad.text


def test_a_run_can_open_with_a_stimulus(app: InProcess) -> None:
    with app.client() as client:
        msgs = run_round(client, "I failed my exam again", stimulus="The retake is on Monday")
        before = client.get("/api/sessions").json()["total"]
        bad = client.post("/api/rounds", json={"situation": "x", "stimulus": "y" * 501})
        after = client.get("/api/sessions").json()["total"]
    kinds = [m.type for m in msgs]
    assert kinds.index("stimulus_injected") < kinds.index("round_started")
    [started] = [m for m in msgs if m.type == "round_started"]
    assert started.data["situation"] == "The retake is on Monday\n\nI failed my exam again"
    assert bad.status_code == 400 and "too long" in bad.json()["error"]["message"]
    assert after == before  # the refused run started nothing
