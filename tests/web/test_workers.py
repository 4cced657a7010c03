"""Several worker processes on one Redis and one database: any request lands on any worker.

Each test starts a real ``redis-server`` and real ``psyche-sse serve`` processes
(tests/workers.py), and talks to them over HTTP with SSE clients.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from httpx_sse import connect_sse

from tests.live import environ, kill_server, run_psyche, settings_env
from tests.waiting import wait_for
from tests.web.accounts import add_users
from tests.web.sse import (
    ROUND_END,
    Msg,
    assert_whole_round,
    follow_round,
    messages,
    start_round,
    texts,
)
from tests.workers import workers

# Each test starts Redis and two or three servers, each warming LiteLLM up before it is used.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Slow enough that a round is still running while the test acts on it.
SLOW = "25"


def events_url(session_id: str) -> str:
    return f"/api/sessions/{session_id}/events"


def read_until(client: httpx.Client, url: str, stop: Any, **headers: str) -> list[Msg]:
    """The stream's events up to and including the first one ``stop`` accepts."""
    out: list[Msg] = []
    with connect_sse(client, "GET", url, headers=headers) as source:
        for msg in messages(source):
            out.append(msg)
            if stop(msg):
                return out
    raise AssertionError("the stream ended first")


def turn_streams(n: int) -> Callable[[Msg], bool]:
    """For :func:`read_until`: the first delta of the round's ``n``-th turn (the council's
    order changes from round to round)."""
    started: list[str | None] = []

    def stop(msg: Msg) -> bool:
        if msg.type == "agent_processing_started":
            started.append(msg.turn_id)
        return (
            msg.type == "agent_processing_update"
            and len(started) >= n
            and msg.turn_id == started[n - 1]
        )

    return stop


def test_start_on_one_watch_on_another_resume_on_a_third_stop_from_any(tmp_path: Path) -> None:
    with workers(tmp_path, 3, offline_tps=SLOW) as cluster:
        a, b, c = (w.client() for w in cluster.servers)
        body = start_round(a, "I was passed over for the promotion")
        sid = body["session_id"]
        # Watched on the second worker until the second turn streams, then dropped.
        first = read_until(b, events_url(sid), turn_streams(2))
        # Resumed on the third with Last-Event-ID: no gap, no duplicate.
        with connect_sse(
            c, "GET", events_url(sid), headers={"Last-Event-ID": str(first[-1].id)}
        ) as source:
            rest: list[Msg] = []
            for msg in messages(source):
                rest.append(msg)
                if len(rest) == 1:
                    # Stopped from the second worker (the round runs on the first).
                    stopped = b.post(f"/api/sessions/{sid}/stop")
                    assert stopped.status_code == 200 and stopped.json()["stopped"] is True
                if msg.type == ROUND_END:
                    break
        everything = first + rest
        ids = [m.id for m in everything]
        assert ids == sorted(set(ids)), "ids strictly increasing, no duplicate"
        complete = next(m for m in everything if m.type == "round_complete")
        assert complete.data["status"] == "cancelled"
        # No gap: each turn's deltas, read from two workers, make the text it ended with.
        finals = {m.turn_id: m.data for m in everything if m.type == "agent_processing_complete"}
        streamed = texts(everything)
        assert finals and streamed.keys() <= finals.keys()
        for turn_id, final in finals.items():
            if final["metadata"]["status"] == "ok":
                assert final["final_content"] == streamed[turn_id]
            else:
                assert final["final_content"].startswith(streamed.get(turn_id, ""))


def test_a_running_session_is_409_elsewhere_and_the_next_round_remembers(tmp_path: Path) -> None:
    with workers(tmp_path, 2, offline_tps=SLOW) as cluster:
        a, b = (w.client() for w in cluster.servers)
        sid = start_round(a, "My sister borrowed money again")["session_id"]
        busy = b.post(
            "/api/rounds",
            json={"situation": "again", "session_id": sid},
            headers={"Accept": "application/json"},
        )
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "round_in_progress"
        first = follow_round(b, events_url(sid))
        # A stimulus sent to the first worker opens the next round, run on the second.
        queued = a.post(f"/api/sessions/{sid}/stimulus", json={"text": "She paid it back"})
        assert queued.status_code == 202, queued.text
        started = start_round(b, "My sister borrowed money again", session_id=sid)
        assert started["session_id"] == sid
        second = follow_round(b, events_url(sid), **{"Last-Event-ID": str(first[-1].id)})
        round_ = assert_whole_round(second)
        assert round_[0].data["stimulus"] == "She paid it back"
        opened = [m for m in round_ if m.type == "agent_processing_started"]
        # The council's memory came from the store, where the first worker left it.
        assert all(m.data["metadata"]["has_memory"] for m in opened)
        assert all(m.data["metadata"]["interaction_count"] == 1 for m in opened)
        assert second[0].id == first[-1].id + 1


def test_serve_workers_needs_redis(tmp_path: Path) -> None:
    done = run_psyche(environ(**settings_env(tmp_path)), "serve", "--workers", "2")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "psyche-sse: error: --workers needs PSYCHE_REDIS_URL: the workers share their "
        "events through Redis"
    ]


def test_a_worker_killed_mid_round_is_ended_by_another(tmp_path: Path) -> None:
    with workers(tmp_path, 3, offline_tps=SLOW) as cluster:
        a, b, c = (w.client() for w in cluster.servers)
        sid = start_round(a, "The landlord wants us out by May")["session_id"]
        seen: list[Msg] = []
        killed_at = 0.0
        second_turn = turn_streams(2)
        with connect_sse(b, "GET", events_url(sid)) as source:
            for msg in messages(source):
                seen.append(msg)
                if second_turn(msg) and not killed_at:
                    kill_server(cluster[0])  # SIGKILL mid-turn: nothing saved, no goodbye
                    killed_at = time.monotonic()
                if msg.type == ROUND_END:
                    break
        noticed = time.monotonic() - killed_at
        print(f"\nthe killed worker's round ended on its viewers' stream {noticed:.1f} s after")
        ids = [m.id for m in seen]
        assert ids == sorted(set(ids))
        # Nothing ran again: each turn started once and completed once; the one speaking when
        # the worker died (the second, or a later one if this viewer was behind) ended with
        # what it had said, the turns before it as they were.
        started = [m.turn_id for m in seen if m.type == "agent_processing_started"]
        completed = [m for m in seen if m.type == "agent_processing_complete"]
        assert started == [m.turn_id for m in completed] and len(started) >= 2
        *before, cut = completed
        assert all(m.data["metadata"]["status"] == "ok" for m in before)
        streamed = texts(seen).get(cut.turn_id, "")
        assert cut.data["metadata"]["status"] == "error"
        assert cut.data["metadata"]["error_class"] == "WorkerLost"
        assert cut.data["final_content"].startswith(streamed)  # nothing published is lost
        complete = next(m for m in seen if m.type == "round_complete")
        assert complete.data["status"] == "cancelled"
        assert "worker running it stopped" in complete.data["reason"]
        # The store agrees, read on the third worker; and the session goes on there.
        stored = c.get(f"/api/sessions/{sid}").json()
        assert stored["rounds"][-1]["status"] == "cancelled"
        turns = {t["id"]: t for t in stored["rounds"][-1]["turns"]}
        assert turns[cut.turn_id]["text"].startswith(streamed)
        start_round(c, "The landlord wants us out by May", session_id=sid)
        after = follow_round(c, events_url(sid), **{"Last-Event-ID": str(seen[-1].id)})
        assert_whole_round(after)


def test_redis_going_away_ends_rounds_honestly_and_workers_recover(tmp_path: Path) -> None:
    with workers(tmp_path, 2, offline_tps=SLOW) as cluster:
        a, b = (w.client() for w in cluster.servers)
        sid = start_round(a, "The band is breaking up")["session_id"]
        read_until(b, events_url(sid), lambda m: m.type == "agent_processing_update")
        cluster.redis.kill()

        def last_round() -> dict[str, Any]:
            rounds: list[dict[str, Any]] = b.get(f"/api/sessions/{sid}").json()["rounds"]
            return rounds[-1]

        wait_for(lambda: last_round()["status"] != "running", 60)
        ended = last_round()
        assert ended["status"] == "error"
        assert "the event bus (Redis) is unavailable" in ended["reason"]
        assert all(t["status"] != "running" for t in ended["turns"])
        # Both workers keep serving pages and stored sessions meanwhile.
        for client in (a, b):
            assert client.get("/").status_code == 200
            assert client.get(f"/s/{sid}").status_code == 200
            assert client.get(f"/api/sessions/{sid}").status_code == 200
        refused = b.post(
            "/api/rounds",
            json={"situation": "again", "session_id": sid},
            headers={"Accept": "application/json"},
        )
        assert refused.status_code == 503
        assert "Redis is unavailable" in refused.json()["error"]["message"]
        # Redis comes back (empty): a new round in the session runs, watched elsewhere.
        cluster.redis.start()
        url = b.get(f"/api/sessions/{sid}").json()["events_url"]  # after what is stored

        def started() -> bool:
            response = b.post(
                "/api/rounds",
                json={"situation": "The band is breaking up", "session_id": sid},
                headers={"Accept": "application/json"},
            )
            return response.status_code == 202

        wait_for(started, 30)
        rounds = ended["index"]
        wait_for(lambda: len(a.get(f"/api/sessions/{sid}").json()["rounds"]) > rounds, 30)
        again = follow_round(a, url)
        # (The stream may open with the stored conversation: its ids are past the old ones.)
        live = [m for m in again if m.type != "session_history"]
        assert live and live[-1].type == ROUND_END
        complete = next(m for m in live if m.type == "round_complete")
        assert complete.data["status"] == "ok"
        assert complete.data["index"] == ended["index"] + 1


def test_delivering_workers_hand_their_rounds_to_a_generating_one(tmp_path: Path) -> None:
    roles = ["deliver", "deliver", "generate"]
    with workers(tmp_path, 3, roles=roles, offline_tps=SLOW) as cluster:
        d1, d2, g = (w.client() for w in cluster.servers)
        sid = start_round(d1, "Should I take the job abroad?")["session_id"]
        seen = read_until(d2, events_url(sid), lambda m: m.type == "agent_processing_update")
        health = [c.get("/healthz").json() for c in (d1, d2, g)]
        assert [h["role"] for h in health] == roles
        assert [h["running"] for h in health] == [0, 0, 1]  # it runs where rounds are made
        first = follow_round(d2, events_url(sid), **{"Last-Event-ID": str(seen[-1].id)})
        assert first[-1].type == ROUND_END
        # A round started with its stream (POST /api/rounds) on a delivering worker.
        body = {"situation": "Should I take the job abroad?", "session_id": sid}
        with connect_sse(d1, "POST", "/api/rounds", json=body) as source:
            second = list(messages(source))
        assert second and second[0].type != "session_history", [m.type for m in second[:3]]
        assert_whole_round(second)
        assert second[0].id > first[-1].id
        assert g.get("/healthz").json()["running"] == 0


def test_a_session_deleted_on_one_worker_is_gone_from_every_one(tmp_path: Path) -> None:
    with workers(tmp_path, 3, offline_tps=SLOW) as cluster:
        a, b, c = (w.client() for w in cluster.servers)
        sid = start_round(a, "We are moving to another city")["session_id"]
        seen: list[Msg] = []
        deleted = None
        # Watched on the third worker; deleted from the second while the first runs it.
        with connect_sse(c, "GET", events_url(sid)) as source:
            for msg in messages(source):
                seen.append(msg)
                if msg.type == "agent_processing_update" and deleted is None:
                    deleted = b.delete(f"/api/sessions/{sid}")
                    assert deleted.status_code == 204, deleted.text
        # The stream ended (the loop above fell through), with the round ended first.
        assert seen[-1].type != "agent_processing_update"
        for client in (a, b, c):
            assert client.get(f"/api/sessions/{sid}").status_code == 404
            assert client.get("/healthz").json()["running"] == 0
        keys = redis.Redis.from_url(cluster.redis.url).keys(f"*{sid}*")
        assert keys == [], "nothing of it is left in Redis"


def test_a_users_running_rounds_are_counted_on_every_worker(tmp_path: Path) -> None:
    tokens = add_users(tmp_path / "psyche.db")
    with workers(tmp_path, 2, offline_tps=SLOW, user_running_rounds="1") as cluster:
        bearer = {"Authorization": f"Bearer {tokens['bob']}"}
        a, b = (w.client(headers=bearer) for w in cluster.servers)
        sid = start_round(a, "My flatmate never cleans")["session_id"]
        refused = b.post(
            "/api/rounds",
            json={"situation": "Another thing entirely"},
            headers={"Accept": "application/json"},
        )
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_rounds"
        # Another user is not held back by bob's round.
        with cluster[1].client(headers={"Authorization": f"Bearer {tokens['carol']}"}) as carol:
            start_round(carol, "Something of my own")
        stopped = b.post(f"/api/sessions/{sid}/stop")
        assert stopped.status_code == 200 and stopped.json()["stopped"] is True
        # Once it has ended, on whichever worker it ran.
        wait_for(
            lambda: (
                b.post(
                    "/api/rounds",
                    json={"situation": "Now it is my turn"},
                    headers={"Accept": "application/json"},
                ).status_code
                == 202
            ),
            30,
        )


def test_the_stored_history_on_another_worker_joins_the_live_stream_exactly(
    tmp_path: Path,
) -> None:
    with workers(tmp_path, 2, offline_tps=SLOW) as cluster:
        a, b = (w.client() for w in cluster.servers)
        sid = start_round(a, "My best friend forgot my birthday")["session_id"]
        seen = read_until(b, events_url(sid), turn_streams(2))
        # The session as the second worker reads it from the store stands for what the first
        # one has saved: its stream goes on from there, from the bus, with nothing resent.
        body = b.get(f"/api/sessions/{sid}").json()
        assert body["last_event_id"] <= seen[-1].id
        [first] = read_until(b, body["events_url"], lambda m: True)
        assert first.type != "session_history" and first.id == body["last_event_id"] + 1
        # An id the bus cannot replay from (a client from before a restart): the second
        # worker sends the conversation as the first one has saved it, mid-turn, then the
        # events after what it saved.
        got = follow_round(b, events_url(sid), **{"Last-Event-ID": "999999"})
        history, *live = got
        assert history.type == "session_history"
        assert all(m.id > history.id for m in live)
        stored = {
            t["id"]: t["text"] or ""
            for r in history.data["transcript"]["rounds"]
            for t in r["turns"]
        }
        streamed = texts(live)
        finals = {m.turn_id: m.data for m in live if m.type == "agent_processing_complete"}
        assert finals
        for turn_id, final in finals.items():
            # No gap and no repeat: what was saved, then what streamed after it.
            assert stored.get(turn_id, "") + streamed.get(turn_id, "") == final["final_content"]
