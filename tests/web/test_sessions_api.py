"""The stored sessions over the API: list, transcript, rename, delete and export, with every
error a client can provoke. In process, but for what follows a session's live events."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import connect_sse

from psyche_sse.engine.live import Session
from psyche_sse.export import from_json
from psyche_sse.transcript import Transcript
from psyche_sse.web.context import Context
from tests.inprocess import InProcess
from tests.live import LiveServer, serve_in_thread, stop_server
from tests.waiting import wait_for
from tests.web.conftest import SEEDED_COUNT, SeededServer
from tests.web.sse import (
    Msg,
    finals,
    finished_session,
    follow_round,
    messages,
    start_round,
    texts,
)

SAFE_FILENAME = re.compile(r'attachment; filename="psyche-[a-z0-9-]+-[A-Za-z0-9]+\.(json|md|html)"')


def a_session(
    server: LiveServer | InProcess, situation: str = "My boss <b>yelled</b> at me"
) -> str:
    """A session with one finished round."""
    with server.client() as client:
        return finished_session(client, situation)


def assert_json_error(response: httpx.Response, status: int, needle: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["status"] == status
    assert needle.lower() in error["message"].lower()
    assert "Traceback" not in response.text


# --- the list ------------------------------------------------------------------------------


def test_the_list_is_newest_activity_first_in_pages(seeded_app: SeededServer) -> None:
    newest_first = [s.id for s in reversed(seeded_app.sessions)]
    seen: list[dict[str, Any]] = []
    with seeded_app.server.client() as client:
        url: str | None = "/api/sessions"
        pages = 0
        while url is not None:
            body = client.get(url).json()
            assert body["total"] == SEEDED_COUNT
            assert body["limit"] == 20
            assert body["offset"] == len(seen)
            assert (body["previous"] is None) == (pages == 0)
            seen.extend(body["sessions"])
            url = body["next"]
            pages += 1
    assert pages == 3
    assert [s["id"] for s in seen] == newest_first
    newest = seen[0]
    assert newest["title"] == seeded_app.interrupted.title  # the first situation, as it was
    assert newest["rounds"] == 2
    assert newest["last_status"] == "interrupted"
    assert newest["running"] is False
    assert newest["updated"] == seeded_app.interrupted.updated
    assert newest["url"] == f"/api/sessions/{newest['id']}"
    assert newest["page_url"] == f"/s/{newest['id']}"
    assert {s["last_status"] for s in seen[1:]} == {"ok"}


def test_limit_and_offset(seeded_app: SeededServer) -> None:
    with seeded_app.server.client() as client:
        body = client.get("/api/sessions", params={"limit": 7, "offset": 40}).json()
        past = client.get("/api/sessions", params={"offset": 1000}).json()
    assert [s["id"] for s in body["sessions"]] == [s.id for s in seeded_app.sessions[4::-1]]
    assert body["next"] is None
    assert body["previous"] == "/api/sessions?limit=7&offset=33"
    assert past["sessions"] == [] and past["total"] == SEEDED_COUNT and past["next"] is None


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("limit=0", "limit must be between 1 and 100"),
        ("limit=101", "limit must be between 1 and 100"),
        ("limit=ten", "limit must be a whole number"),
        ("limit=1.5", "limit must be a whole number"),
        ("offset=-1", "offset must be a whole number"),
        ("offset=1000001", "offset must be between"),
        ("offset=" + "9" * 5000, "offset must be a whole number"),
    ],
)
def test_bad_paging_is_a_400(seeded_app: SeededServer, query: str, needle: str) -> None:
    with seeded_app.server.client() as client:
        response = client.get(f"/api/sessions?{query}")
    assert_json_error(response, 400, needle)


# --- one session -----------------------------------------------------------------------


def test_the_transcript_is_the_whole_conversation(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        body = start_round(client, "A colleague took the credit")
        msgs = follow_round(client, body["events_url"])
        session = client.get(f"/api/sessions/{body['session_id']}").json()
    assert session["session_id"] == session["id"] == body["session_id"]
    assert session["title"] == "A colleague took the credit"
    assert session["running"] is False and session["current_round"] is None
    assert session["last_event_id"] == msgs[-1].id
    assert session["events_url"] == f"{body['events_url']}?after={msgs[-1].id}"
    assert session["exports"]["md"] == f"/api/sessions/{body['session_id']}/export.md"
    (round_,) = session["rounds"]
    assert round_["id"] == body["round_id"]
    assert round_["status"] == "ok" and round_["situation"] == "A colleague took the credit"
    streamed = finals(msgs)
    assert [t["id"] for t in round_["turns"]] == list(streamed)
    for turn in round_["turns"]:
        final = streamed[turn["id"]]
        assert turn["status"] == "ok"
        assert turn["text"] == final["final_content"]
        assert turn["sentiment"]["label"] == final["sentiment"]["label"]
        assert turn["model"] == final["metadata"]["model"]


def test_an_interrupted_turn_keeps_its_partial_text(seeded_app: SeededServer) -> None:
    with seeded_app.server.client() as client:
        session = client.get(f"/api/sessions/{seeded_app.interrupted.id}").json()
    first, second = session["rounds"]
    assert first["status"] == "ok" and len(first["turns"]) == 5
    assert second["status"] == "interrupted"
    shadow, persona = second["turns"]
    assert shadow["status"] == "ok"
    assert persona["status"] == "interrupted"
    assert persona["text"].startswith("Persona was half way through a thought")


def test_a_transcript_read_mid_turn_then_its_events_url_is_the_whole_text(
    paced_server: LiveServer,
) -> None:
    """The transcript's last_event_id is exact: its text so far plus the events after it is
    every word, once."""
    with paced_server.client() as client:
        body = start_round(client, "Mid-turn reader")
        with connect_sse(client, "GET", body["events_url"]) as source:
            for msg in messages(source):
                if msg.type == "agent_processing_update" and msg.data["progress"] > 0.2:
                    break
        session = client.get(f"/api/sessions/{body['session_id']}").json()
        current = session["rounds"][-1]["turns"][-1]
        # Up to the end of the turn read mid-way: what the test is about; the rest of the
        # round is stopped.
        later: list[Msg] = []
        with connect_sse(client, "GET", session["events_url"]) as source:
            for msg in messages(source):
                later.append(msg)
                if msg.type == "agent_processing_complete" and msg.turn_id == current["id"]:
                    break
        client.post(f"/api/sessions/{body['session_id']}/stop")
    assert session["running"] is True and session["current_round"] == body["round_id"]
    (round_,) = session["rounds"]
    assert round_["status"] == "running"
    assert current["status"] == "running"
    # Right after the transcript's last event: the next one; or, when more of the turn was
    # streamed by the time the stream was read, those deltas merged into one message, which
    # carries the newest of their ids (the text below shows none is missing).
    first = later[0]
    if first.type == "agent_processing_update" and first.turn_id == current["id"]:
        assert first.id > session["last_event_id"]
    else:
        assert first.id == session["last_event_id"] + 1
    final = finals(later)[current["id"]]["final_content"]
    assert current["text"] + texts(later).get(current["id"], "") == final


def test_a_session_said_ended_has_its_end_in_its_transcript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow read of the store: the run ends while the transcript is read. The session is
    # then said to be running (a client looks again), never ended with its end missing.
    armed = threading.Event()
    held: list[str] = []  # the sessions whose answer waits
    read = Context.stored

    async def stored(self: Context, session: Session) -> Transcript:
        transcript = await read(self, session)
        if armed.is_set() and session.finished is not None:
            held.append(session.id)
            with anyio.fail_after(60):
                await session.finished.wait()  # the run ends before the answer goes out
        return transcript

    monkeypatch.setattr(Context, "stored", stored)
    server = serve_in_thread(tmp_path, offline_tps="5")
    try:
        with server.client() as client:
            sid = start_round(client, "A long talk about the weather")["session_id"]
            wait_for(lambda: client.get(f"/api/sessions/{sid}").json()["rounds"])
            armed.set()
            answers: list[dict[str, Any]] = []
            reader = threading.Thread(
                target=lambda: answers.append(client.get(f"/api/sessions/{sid}").json())
            )
            reader.start()
            wait_for(lambda: held)  # the transcript is read, the answer waits
            assert client.post(f"/api/sessions/{sid}/stop").json()["stopped"]
            reader.join(timeout=60)
    finally:
        stop_server(server)
    (answer,) = answers
    assert answer["rounds"][-1]["status"] == "running"  # read before the run ended
    assert answer["running"] is True


def test_an_unknown_session_is_a_404_everywhere(app: InProcess) -> None:
    with app.client() as client:
        for method, path in [
            ("GET", "/api/sessions/nope"),
            ("PATCH", "/api/sessions/nope"),
            ("DELETE", "/api/sessions/nope"),
            ("GET", "/api/sessions/nope/export.json"),
            ("GET", "/api/sessions/nope/events"),
        ]:
            response = client.request(method, path, json={"title": "x"})
            assert_json_error(response, 404, "no session")
            assert response.json()["error"]["code"] == "session_not_found"


# --- rename ----------------------------------------------------------------------------


def test_rename(app: InProcess) -> None:
    session_id = a_session(app)
    url = f"/api/sessions/{session_id}"
    with app.client() as client:
        response = client.patch(url, json={"title": "  Work,\n <i>again</i>  "})
        session = client.get(url).json()
        listed = client.get("/api/sessions", params={"limit": 100}).json()["sessions"]
    assert response.status_code == 200
    assert response.json() == {"session_id": session_id, "title": "Work, <i>again</i>"}
    assert session["title"] == "Work, <i>again</i>"
    assert {s["id"]: s["title"] for s in listed}[session_id] == "Work, <i>again</i>"


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"json": {"title": ""}}, 422, "cannot be empty"),
        ({"json": {"title": " \n\t "}}, 422, "cannot be empty"),
        ({"json": {"title": "x" * 201}}, 422, "too long"),
        ({"json": {"title": 42}}, 422, "title"),
        ({"json": {"name": "x"}}, 422, "title"),
        ({"json": ["x"]}, 400, "object"),
        ({"content": b"{title", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
        ({"content": b"title=x", "headers": {"Content-Type": "text/plain"}}, 415, "JSON"),
    ],
)
def test_a_bad_rename_is_refused_and_changes_nothing(
    app: InProcess, kwargs: dict[str, Any], status: int, needle: str
) -> None:
    session_id = a_session(app, "Keep this title")
    with app.client() as client:
        response = client.patch(f"/api/sessions/{session_id}", **kwargs)
        title = client.get(f"/api/sessions/{session_id}").json()["title"]
    assert_json_error(response, status, needle)
    assert title == "Keep this title"


def test_a_title_of_exactly_the_limit_is_accepted(app: InProcess) -> None:
    session_id = a_session(app)
    with app.client() as client:
        response = client.patch(f"/api/sessions/{session_id}", json={"title": "é" * 200})
    assert response.status_code == 200
    assert response.json()["title"] == "é" * 200


def test_a_cross_site_browser_cannot_rename_or_delete(app: InProcess) -> None:
    session_id = a_session(app, "Not yours")
    evil = {"Origin": "http://evil.example"}
    with app.client() as client:
        rename = client.patch(f"/api/sessions/{session_id}", json={"title": "x"}, headers=evil)
        delete = client.delete(f"/api/sessions/{session_id}", headers=evil)
        still = client.get(f"/api/sessions/{session_id}")
    assert_json_error(rename, 403, "cross-site")
    assert_json_error(delete, 403, "cross-site")
    assert still.json()["title"] == "Not yours"


# --- delete ----------------------------------------------------------------------------


def test_delete(app: InProcess) -> None:
    session_id = a_session(app)
    url = f"/api/sessions/{session_id}"
    with app.client() as client:
        response = client.delete(url)
        after = [client.get(url), client.get(f"{url}/export.json"), client.delete(url)]
        listed = client.get("/api/sessions", params={"limit": 100}).json()["sessions"]
        page = client.get(f"/s/{session_id}")
    assert response.status_code == 204
    assert response.content == b""
    for gone in after:
        assert_json_error(gone, 404, "no session")
    assert session_id not in {s["id"] for s in listed}
    assert page.status_code == 404


def test_deleting_a_session_with_a_round_running_stops_it_first(paced_server: LiveServer) -> None:
    with paced_server.client() as client:
        body = start_round(client, "Delete me while I speak")
        seen = []
        with connect_sse(client, "GET", body["events_url"]) as source:
            stream = messages(source)
            for msg in stream:
                seen.append(msg)
                if msg.type == "agent_processing_update":
                    break
            response = client.delete(f"/api/sessions/{body['session_id']}")
            # The viewer sees the round end (the turn cancelled), then its stream ends.
            seen.extend(stream)
        gone = client.get(f"/api/sessions/{body['session_id']}")
    assert response.status_code == 204
    kinds = [m.type for m in seen]
    # The state of a round in which the turn was stopped may switch emergency mode.
    end = kinds.index("round_complete")
    assert kinds[end - 1 : end + 1] == ["agent_processing_complete", "round_complete"]
    assert kinds[-1] == "conversation_state"
    assert seen[end - 1].data["metadata"]["status"] == "cancelled"
    assert seen[end].data["status"] == "cancelled"
    assert kinds.count("agent_processing_started") == kinds.count("agent_processing_complete")
    assert gone.status_code == 404


# --- export ----------------------------------------------------------------------------


def test_export_json_reads_back_to_the_transcript(app: InProcess) -> None:
    session_id = a_session(app, "Round <trip> & back")
    with app.client() as client:
        session = client.get(f"/api/sessions/{session_id}").json()
        response = client.get(f"/api/sessions/{session_id}/export.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert SAFE_FILENAME.fullmatch(response.headers["content-disposition"])
    assert response.headers["content-disposition"].endswith(f'-{session_id}.json"')
    exported = from_json(response.text)
    assert exported == Transcript.from_dict(session)
    assert exported.rounds[0].situation == "Round <trip> & back"
    assert len(exported.rounds[0].turns) == 5


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [("md", "text/markdown; charset=utf-8"), ("html", "text/html; charset=utf-8")],
)
def test_export_for_people_escapes_what_was_said(app: InProcess, fmt: str, media_type: str) -> None:
    session_id = a_session(app, "<script>alert(1)</script> at work")
    with app.client() as client:
        response = client.get(f"/api/sessions/{session_id}/export.{fmt}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert SAFE_FILENAME.fullmatch(response.headers["content-disposition"])
    assert "<script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; at work" in response.text
    if fmt == "html":
        assert response.text.startswith("<!doctype html>")
        assert "default-src 'none'" in response.text


def test_export_file_names_are_plain_ascii(app: InProcess) -> None:
    session_id = a_session(app)
    with app.client() as client:
        client.patch(f"/api/sessions/{session_id}", json={"title": 'Ünïcode "quotes"\\/; ok'})
        response = client.get(f"/api/sessions/{session_id}/export.md")
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="psyche-unicode-quotes-ok-{session_id}.md"'


def test_an_unknown_export_format_is_a_404(app: InProcess) -> None:
    session_id = a_session(app)
    with app.client() as client:
        response = client.get(f"/api/sessions/{session_id}/export.pdf")
    assert_json_error(response, 404, "use json, md, html")
