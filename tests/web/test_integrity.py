"""The stream's promise under load, against a real server: every viewer gets every word,
once, in order, however it resumes and however small the history kept in memory; a viewer
gets at most ``max_deltas_per_second`` messages a second of a turn; the rounds running at
once are capped; idle sessions leave memory and come back whole."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.live import LiveServer, serve_in_thread, start_server, stop_server
from tests.waiting import wait_for
from tests.web.sse import Msg, finished_session, follow_round, messages, start_round

RESUMES = 200
WORKERS = 4


@pytest.fixture(scope="module")
def small_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The offline model as fast as it goes, 100 events of history in memory."""
    server = start_server(
        tmp_path_factory.mktemp("small"), offline_tps="0", history_events="100", heartbeat="0.5"
    )
    yield server
    stop_server(server)


def running_turn(history: Msg) -> tuple[str, str] | None:
    """The turn a ``session_history`` shows streaming: (turn id, its text so far)."""
    rounds = history.data["transcript"]["rounds"]
    if not rounds or not rounds[-1]["turns"]:
        return None
    turn = rounds[-1]["turns"][-1]
    return (turn["id"], turn["text"]) if turn["status"] == "running" else None


@dataclass
class Tally:
    resumes: int = 0  # resumes that landed in the middle of a turn
    turns: int = 0  # turns whose whole text was checked
    wrong: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def resume_once(client: httpx.Client, url: str, tally: Tally) -> None:
    """Connect with ``Last-Event-ID: 1`` (long gone from memory) and check that the history's
    text of the turn it catches streaming, plus the deltas after it, is the turn's final
    text; likewise every turn that starts while this client watches."""
    text: dict[str, str] = {}
    mid_turn = False
    with connect_sse(client, "GET", url, headers={"Last-Event-ID": "1"}) as source:
        for msg in messages(source):
            if msg.type == "session_history":
                # Stands for everything before it: a client starts again from it.
                text.clear()
                caught = running_turn(msg)
                if caught is not None:
                    text[caught[0]] = caught[1]
                    mid_turn = True
            elif msg.type == "agent_processing_started":
                text[msg.turn_id or ""] = ""
            elif msg.type == "agent_processing_update":
                if msg.turn_id in text:
                    text[msg.turn_id or ""] += msg.data["partial_content"]
            elif msg.type == "agent_processing_complete" and msg.turn_id in text:
                final = msg.data["final_content"]
                got = text.pop(msg.turn_id or "")
                with tally.lock:
                    tally.turns += 1
                    tally.resumes += mid_turn
                    if got != final:
                        tally.wrong.append({"id": msg.id, "got": len(got), "final": len(final)})
                return


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_resuming_mid_round_under_load_never_loses_a_word(small_history: LiveServer) -> None:
    tally = Tally()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        # A session whose runs of 20 rounds follow one another until the test ends; each
        # run's own stream (POST /api/rounds) ends with its last round.
        try:
            with small_history.client() as client:
                session_id = None
                while not stop.is_set():
                    fields = {"situation": "We keep arguing about money", "rounds": 20}
                    if session_id:
                        fields["session_id"] = session_id
                    with connect_sse(client, "POST", "/api/rounds", json=fields) as source:
                        for msg in messages(source):
                            if session_id is None:
                                session_id = msg.data["session_id"]
                                sessions.append(session_id)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    def resume(worker: int) -> None:
        try:
            with small_history.client() as client:
                while tally.resumes < RESUMES and not stop.is_set():
                    url = f"/api/sessions/{sessions[worker % len(sessions)]}/events"
                    resume_once(client, url, tally)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    sessions: list[str] = []
    runners = [threading.Thread(target=run, daemon=True) for _ in range(2)]
    for thread in runners:
        thread.start()
    wait_for(lambda: len(sessions) == 2 or errors)
    resumers = [threading.Thread(target=resume, args=(i,)) for i in range(WORKERS)]
    for thread in resumers:
        thread.start()
    for thread in resumers:
        thread.join(timeout=540)
    stop.set()
    with small_history.client() as client:
        for session_id in sessions:
            client.post(f"/api/sessions/{session_id}/stop")
    for thread in runners:
        thread.join(timeout=60)
    assert not errors, errors
    assert tally.resumes >= RESUMES
    assert tally.wrong == [], f"{len(tally.wrong)} of {tally.turns} turns came out wrong"


def stamp(msg: Msg) -> float:
    return datetime.fromisoformat(msg.data["timestamp"]).timestamp()


def test_a_viewer_gets_at_most_30_messages_a_second_of_a_turn(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The model streams 50 deltas a second, a turn lasting a second or two; a viewer's
    # messages go out on the ticks of a shared 1/30 s clock, at most one a tick.
    server = serve_in_thread(tmp_path_factory.mktemp("rate"), offline_tps="50", offline_tick="0")
    try:
        with server.client() as client:
            body = start_round(client, "A quick question about pacing")
            msgs: list[Msg] = []
            with connect_sse(client, "GET", body["events_url"]) as source:
                for msg in messages(source):
                    msgs.append(msg)
                    if (
                        msg.type == "agent_processing_complete"
                        and msg.data["agent_id"] == "Persona"
                    ):
                        break
            client.post(f"/api/sessions/{body['session_id']}/stop")
    finally:
        stop_server(server)
    turns: dict[str, list[float]] = {}
    for msg in msgs:
        if msg.type in ("agent_processing_started", "agent_processing_complete"):
            turns.setdefault(msg.turn_id or "", []).append(stamp(msg))
    for turn_id, (began, ended) in turns.items():
        updates = [stamp(m) for m in msgs if m.type.endswith("update") and m.turn_id == turn_id]
        assert len(updates) > 30  # long enough to tell
        # The turn's whole length bounds its messages: 30 a second, and the first at once.
        assert len(updates) <= 30 * (ended - began) + 1
        # Each message is stamped with its newest delta, published at most one tick before
        # the message goes out: a second of stamps holds 30 ticks' messages and one more.
        for i, start in enumerate(updates):
            assert sum(1 for t in updates[i:] if t < start + 1.0) <= 31


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """At most two rounds at once, at a pace that keeps them running a while."""
    server = serve_in_thread(
        tmp_path_factory.mktemp("capped"), offline_tps="40", max_running_rounds="2"
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def forgetful(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Sessions leave memory after half a second idle; a viewer that has gone is noticed at
    the next heartbeat, every 0.3 s."""
    server = serve_in_thread(
        tmp_path_factory.mktemp("idle"), offline_tps="0", session_idle="0.5", heartbeat="0.3"
    )
    yield server
    stop_server(server)


def test_rounds_over_the_cap_get_429_with_retry_after(capped: LiveServer) -> None:
    with capped.client() as client:
        running = [start_round(client, f"Round {i}") for i in range(2)]
        refused = client.post(
            "/api/rounds",
            json={"situation": "One too many"},
            headers={"Accept": "application/json"},
        )
        page = client.post("/rounds", data={"situation": "One too many"})
        for body in running:
            client.post(f"/api/sessions/{body['session_id']}/stop")
            follow_round(client, body["events_url"])  # wound down: the next test may start
    assert refused.status_code == 429
    assert refused.headers["retry-after"].isdigit()
    error = refused.json()["error"]
    assert error["code"] == "too_many_rounds"
    assert "busy" in error["message"]
    # Without JavaScript: the form again, with the message and the text kept.
    assert page.status_code == 429 and page.headers["retry-after"].isdigit()
    assert "the council is busy" in page.text and "One too many" in page.text


def test_an_idle_session_leaves_memory_and_comes_back_numbering_on(
    forgetful: LiveServer,
) -> None:
    with forgetful.client() as client:
        session_id = finished_session(client, "Where did the money go?")
        last = client.get(f"/api/sessions/{session_id}").json()["last_event_id"]
        wait_for(lambda: client.get("/healthz").json()["sessions"] == 0)
        # Back from the store: the transcript, then a resume with no history and no gap.
        stored = client.get(f"/api/sessions/{session_id}").json()
        url = f"/api/sessions/{session_id}/events"
        with connect_sse(client, "GET", url, headers={"Last-Event-ID": str(last)}) as source:
            start_round(client, "And now?", session_id=session_id)
            stream = messages(source)
            first, started = next(stream), next(stream)
    assert stored["last_event_id"] == last
    assert len(stored["rounds"]) == 1 and stored["rounds"][0]["status"] == "ok"
    # The new run's first event (who hears whom) comes right after the last one stored.
    assert first.type == "network_update" and first.id == last + 1
    assert started.type == "round_started" and started.data["index"] == 2


def test_a_watched_session_stays_in_memory(forgetful: LiveServer) -> None:
    with forgetful.client() as client:
        session_id = finished_session(client, "Watch me")
        last = client.get(f"/api/sessions/{session_id}").json()["last_event_id"]
        url = f"/api/sessions/{session_id}/events"
        with connect_sse(client, "GET", url, headers={"Last-Event-ID": str(last)}) as source:
            stream = messages(source)
            finished_session(client, "Nobody watches me")
            # Every idle session leaves; the watched one stays, its stream open.
            wait_for(lambda: client.get("/healthz").json()["sessions"] == 1)
            start_round(client, "Still here?", session_id=session_id)
            first = next(stream)
    assert first.type == "network_update" and first.id == last + 1
