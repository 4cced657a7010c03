"""Searching the sessions against a running server with accounts: the API and the page,
each user finding only their own sessions, passages marked safely, queries that are only
text, and the preview line of the sessions list."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from html import unescape

import pytest

from psyche_sse.store import Store, queries
from psyche_sse.web.search import MAX_QUERY_CHARS
from tests import factories as f
from tests.live import serve_in_thread, stop_server
from tests.web.accounts import Team, add_users
from tests.web.sse import finished_session

NOW = "2026-02-01T10:00:00.000+00:00"
SCRIPT_REPLY = "I feel <script>alert(1)</script> envy of the keeper"
BOLD_REPLY = "<b>Bold</b> words from the mask"


def _write(
    conn: sqlite3.Connection, session: str, owner: str, situation: str, replies: list[str]
) -> None:
    [owner_id] = conn.execute("SELECT id FROM users WHERE name = ?", (owner,)).fetchone()
    queries.reserve_ids(
        conn, session_id=session, ceiling=1000, title=situation, now=NOW, owner=owner_id
    )
    round_id = f"{session}r"
    queries.insert_round(
        conn, replace(f.round_started(session, round_id, situation), timestamp=NOW)
    )
    for n, text in enumerate(replies):
        started = f.started(f"{session}t{n}", f.AGENT_IDS[n], session=session, round_id=round_id)
        queries.insert_turn(conn, replace(started, timestamp=NOW), position=n)
        complete = f.complete(
            text, f"{session}t{n}", agent=f.AGENT_IDS[n], session=session, round_id=round_id
        )
        queries.finish_turn(conn, replace(complete, timestamp=NOW))
    complete_round = f.round_complete(session, round_id, duration_ms=100)
    queries.finish_round(conn, replace(complete_round, timestamp=NOW))


@pytest.fixture(scope="module")
def searchers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """alice (an admin), bob and carol; bob and carol each have a session about a
    lighthouse, written before the server started."""
    where = tmp_path_factory.mktemp("search")
    db = where / "psyche.db"
    tokens = add_users(db)
    store = Store.open(db)
    try:
        store.write_now(
            partial(
                _write,
                session="bobs",
                owner="bob",
                situation="The lighthouse keeper quits",
                replies=[SCRIPT_REPLY, BOLD_REPLY],
            )
        )
        store.write_now(
            partial(
                _write,
                session="carols",
                owner="carol",
                situation="The lighthouse is for sale",
                replies=["Quiet resentment"],
            )
        )
    finally:
        store.close()
    server = serve_in_thread(where, offline_tps="0", heartbeat="0.5")
    yield Team(server, db, tokens)
    stop_server(server)


def ids(body: dict[str, object]) -> list[str]:
    sessions = body["sessions"]
    assert isinstance(sessions, list)
    return [s["id"] for s in sessions]


def test_a_word_only_in_a_reply_finds_its_session(searchers: Team) -> None:
    situation = "Should I answer the letter"
    with searchers.token_client("bob") as bob:
        session_id = finished_session(bob, situation)
        turns = bob.get(f"/api/sessions/{session_id}").json()["rounds"][0]["turns"]
        said = " ".join(t["text"] for t in turns if t["status"] == "ok")
        words = {w for w in re.findall(r"[a-z]{5,}", said.lower())}
        word = sorted(words - set(situation.lower().split()))[0]
        body = bob.get("/api/sessions", params={"q": word}).json()
    assert session_id in ids(body)
    [hit] = [s for s in body["sessions"] if s["id"] == session_id]
    assert hit["snippet"]["in"] == "reply"
    assert hit["snippet"]["agent_id"] in f.AGENT_IDS
    marked = re.findall(r"<mark>(.*?)</mark>", hit["snippet"]["html"])
    assert marked and {m.lower() for m in marked} == {word}
    assert word in hit["snippet"]["text"].lower()
    assert hit["page_url"] == f"/s/{session_id}" and hit["title"] == situation


def test_each_user_finds_only_their_own_sessions_and_an_admin_finds_all(searchers: Team) -> None:
    found = {}
    for name in ("bob", "carol", "alice"):
        with searchers.token_client(name) as client:
            body = client.get("/api/sessions", params={"q": "lighthouse"}).json()
            page = client.get("/sessions", params={"q": "lighthouse"})
        assert page.status_code == 200
        found[name] = (sorted(ids(body)), body["total"], page.text)
    assert found["bob"][:2] == (["bobs"], 1)
    assert found["carol"][:2] == (["carols"], 1)
    assert found["alice"][:2] == (["bobs", "carols"], 2)
    assert 'href="/s/bobs"' in found["bob"][2] and "/s/carols" not in found["bob"][2]
    assert 'href="/s/carols"' in found["carol"][2] and "/s/bobs" not in found["carol"][2]
    assert "/s/bobs" in found["alice"][2] and "/s/carols" in found["alice"][2]
    # A word only in carol's session finds nothing for bob, and says so.
    with searchers.cookie_client("bob") as bob:
        assert bob.get("/api/sessions", params={"q": "resentment"}).json()["total"] == 0
        page = bob.get("/sessions", params={"q": "resentment"}).text
    assert "0 sessions found for “resentment”" in page and "/s/carols" not in page


def test_the_passage_is_escaped_and_its_match_marked(searchers: Team) -> None:
    with searchers.token_client("bob") as bob:
        body = bob.get("/api/sessions", params={"q": "script"}).json()
        page = bob.get("/sessions", params={"q": "script"}).text
    [hit] = body["sessions"]
    html = hit["snippet"]["html"]
    assert "&lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt;" in html
    assert "<script" not in html and "<script>alert" not in page
    assert unescape(re.sub("</?mark>", "", html)) == hit["snippet"]["text"]
    assert hit["snippet"]["text"] in SCRIPT_REPLY
    assert "&lt;<mark>script</mark>&gt;" in page
    assert "Shadow&#39;s reply" in page or "Shadow's reply" in page


@pytest.mark.parametrize(
    ("query", "finds"),
    [
        ('"lighthouse', ["bobs"]),
        ('"lighthouse keeper"', ["bobs"]),
        ('"keeper lighthouse"', []),  # a phrase: in this order only
        ("lighthouse OR nothing", []),  # OR is a word to find, not an operator
        ("NEAR(lighthouse keeper)", []),  # "near" is a word it does not hold
        ("lighthouse*", ["bobs"]),
        ("-lighthouse", ["bobs"]),
        ("situation:lighthouse", []),
        ('light"house', []),
        ("'); DROP TABLE sessions; --", []),
    ],
)
def test_what_is_searched_for_is_only_text(searchers: Team, query: str, finds: list[str]) -> None:
    with searchers.token_client("bob") as bob:
        response = bob.get("/api/sessions", params={"q": query})
        page = bob.get("/sessions", params={"q": query})
    assert response.status_code == 200, response.text
    assert ids(response.json()) == finds
    assert page.status_code == 200
    with searchers.token_client("bob") as bob:
        assert bob.get("/api/sessions", params={"q": "lighthouse"}).json()["total"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        "*",
        '""',
        "- ( )",
        "x" * (MAX_QUERY_CHARS + 1),
        " ".join(f"w{n}" for n in range(13)),
    ],
)
def test_an_empty_or_overlong_search_is_a_clear_400(searchers: Team, query: str) -> None:
    with searchers.token_client("bob") as bob:
        response = bob.get("/api/sessions", params={"q": query})
        page = bob.get("/sessions", params={"q": query})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_query"
    assert "search" in error["message"] or "word" in error["message"]
    assert page.status_code == 400
    assert 'role="search"' in page.text and error["message"] in unescape(page.text)


def test_search_results_come_in_pages(searchers: Team) -> None:
    with searchers.token_client("alice") as alice:
        first = alice.get("/api/sessions", params={"q": "lighthouse", "limit": 1}).json()
        second = alice.get(first["next"]).json()
    assert first["total"] == second["total"] == 2
    assert first["next"] == "/api/sessions?q=lighthouse&limit=1&offset=1"
    assert second["next"] is None
    assert second["previous"] == "/api/sessions?q=lighthouse&limit=1&offset=0"
    assert sorted(ids(first) + ids(second)) == ["bobs", "carols"]


def test_the_list_shows_what_was_said_last_escaped(searchers: Team) -> None:
    with searchers.token_client("bob") as bob:
        listed = bob.get("/api/sessions", params={"limit": 100}).json()
        page = bob.get("/sessions").text
    [bobs] = [s for s in listed["sessions"] if s["id"] == "bobs"]
    assert bobs["preview"] == f"{f.AGENT_IDS[1]}: {BOLD_REPLY}"
    assert (
        '<p class="session-preview">Persona: &lt;b&gt;Bold&lt;/b&gt; words from the mask</p>'
        in page
    )
    assert "<b>Bold</b>" not in page
