"""Read-only links against a running server with accounts: made by the owner only, opened
by anyone without an account, showing the session and nothing else, never indexed, and
revoked at once: the page answers 404 and its open streams end."""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Iterator

import httpx
import pytest
from uvicorn.config import LOGGING_CONFIG

from psyche_sse.logs import LogIds, SharedLinkFilter, uvicorn_config
from psyche_sse.web.sharing import REVOKED
from tests.waiting import wait_for
from tests.web.accounts import Team, open_stream, team
from tests.web.sse import finished_session, start_round


@pytest.fixture(scope="module")
def crew(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    with team(tmp_path_factory.mktemp("sharing"), offline_tps="0", heartbeat="0.5") as t:
        yield t


def share(client: httpx.Client, session_id: str) -> str:
    """A new link to the session: its path."""
    response = client.post(f"/api/sessions/{session_id}/share")
    assert response.status_code == 201, response.text
    body = response.json()
    path: str = body["path"]
    assert path.startswith("/shared/") and body["url"].endswith(path)
    assert response.headers["location"] == path
    assert response.headers["cache-control"] == "no-store"
    return path


def stranger(crew: Team) -> httpx.Client:
    """A client with no cookie and no token."""
    return crew.server.client()


def test_a_link_opens_the_session_without_an_account_and_nothing_else(crew: Team) -> None:
    with crew.token_client("bob") as bob:
        session_id = finished_session(bob, "Bob's shared dilemma")
        path = share(bob, session_id)
        text = bob.get(f"/api/sessions/{session_id}").json()["rounds"][0]["turns"][0]["text"]
    with stranger(crew) as anyone:
        page = anyone.get(path)
        pictures = anyone.get(path, params={"part": "pictures"})
        api = anyone.get(f"/api/sessions/{session_id}")
        own_page = anyone.get(f"/s/{session_id}", follow_redirects=False)
    assert page.status_code == 200
    assert page.headers["x-robots-tag"].startswith("noindex")
    assert '<meta name="robots" content="noindex' in page.text
    assert "Bob&#39;s shared dilemma" in page.text
    assert text.split()[0] in page.text
    assert f'hx-sse:connect="{path}/stream?after=' in page.text
    # Nothing else: no form, no button, no link into the site, no other session.
    for absent in ("<form", "<button", 'href="/sessions', 'href="/s/', "composer", "Sign out"):
        assert absent not in page.text, absent
    assert pictures.status_code == 200 and 'id="pictures"' in pictures.text
    assert pictures.headers["x-robots-tag"].startswith("noindex")
    # The link opens the shared page only.
    assert api.status_code == 401 and own_page.status_code == 303


def test_only_a_hash_of_the_link_is_stored(crew: Team) -> None:
    with crew.token_client("bob") as bob:
        path = share(bob, finished_session(bob, "Hashed"))
    token = path.rsplit("/", 1)[1]
    conn = sqlite3.connect(crew.db)
    try:
        stored = [row[0] for row in conn.execute("SELECT hash FROM shares")]
    finally:
        conn.close()
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert token not in stored


def test_only_the_owner_shares_and_another_user_cannot_see_the_link(crew: Team) -> None:
    with crew.token_client("bob") as bob:
        session_id = finished_session(bob, "Bob's alone")
    with crew.token_client("carol") as carol:
        for method in ("GET", "POST", "DELETE"):
            theirs = carol.request(method, f"/api/sessions/{session_id}/share")
            unknown = carol.request(method, "/api/sessions/0123456789abcdef/share")
            assert theirs.status_code == unknown.status_code == 404, method
            assert theirs.text == unknown.text
        page = carol.get(f"/s/{session_id}/share")
        assert page.status_code == 404 and "Bob" not in page.text
    with crew.token_client("alice") as alice:  # an admin sees it, but does not share it
        refused = alice.post(f"/api/sessions/{session_id}/share")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_owner"
        assert alice.get(f"/api/sessions/{session_id}/share").json()["shared"] is False


def test_revoking_answers_404_at_once_and_ends_the_open_stream(crew: Team) -> None:
    with crew.token_client("bob") as bob:
        session_id = finished_session(bob, "Soon private")
        path = share(bob, session_id)
        assert bob.get(f"/api/sessions/{session_id}/share").json()["shared"] is True
        with stranger(crew) as anyone:
            stream = open_stream(anyone, f"{path}/stream")
            wait_for(lambda: stream.status == 200 and stream.chunks)
            assert bob.delete(f"/api/sessions/{session_id}/share").status_code == 204
            gone = anyone.get(path)
            again = anyone.get(f"{path}/stream")
            wait_for(lambda: stream.ended or stream.error is not None)
        assert bob.get(f"/api/sessions/{session_id}/share").json()["shared"] is False
    assert stream.error is None and stream.ended
    ending = b"".join(stream.chunks).decode()
    assert REVOKED in ending and ending.rstrip().endswith("event: end\ndata:")
    assert gone.status_code == 404 and gone.headers["x-robots-tag"].startswith("noindex")
    assert "Soon private" not in gone.text and 'href="/sessions' not in gone.text
    assert again.status_code == 404 and "event: end" in again.text


def test_a_link_revoked_by_another_process_ends_its_stream(crew: Team) -> None:
    with crew.token_client("bob") as bob:
        path = share(bob, finished_session(bob, "Revoked elsewhere"))
    with stranger(crew) as anyone:
        stream = open_stream(anyone, f"{path}/stream")
        wait_for(lambda: stream.status == 200 and stream.chunks)
        conn = sqlite3.connect(crew.db, isolation_level=None)
        try:
            conn.execute("DELETE FROM shares")
        finally:
            conn.close()
        wait_for(lambda: stream.ended or stream.error is not None)
        assert anyone.get(path).status_code == 404
    assert stream.error is None
    assert REVOKED in b"".join(stream.chunks).decode()


def test_a_new_link_replaces_the_old_one_and_deleting_the_session_ends_it(crew: Team) -> None:
    with crew.token_client("bob") as bob, stranger(crew) as anyone:
        session_id = finished_session(bob, "Twice shared")
        first = share(bob, session_id)
        second = share(bob, session_id)
        assert anyone.get(first).status_code == 404
        assert anyone.get(second).status_code == 200
        assert bob.delete(f"/api/sessions/{session_id}").status_code == 204
        assert anyone.get(second).status_code == 404


@pytest.mark.parametrize("token", ["x", "a" * 43, "not~a~token", "a" * 300])
def test_an_unknown_link_is_a_404(crew: Team, token: str) -> None:
    with stranger(crew) as anyone:
        response = anyone.get(f"/shared/{token}")
        stream = anyone.get(f"/shared/{token}/stream")
    assert response.status_code == 404
    assert response.headers["x-robots-tag"].startswith("noindex")
    assert stream.status_code == 404


def test_the_shared_stream_carries_the_round_and_no_control(crew: Team) -> None:
    with crew.token_client("bob") as bob:
        body = start_round(bob, "Followed from outside", rounds=2)
        session_id = body["session_id"]
        wait_for(lambda: bob.get(f"/api/sessions/{session_id}").status_code == 200)
        path = share(bob, session_id)
    with stranger(crew) as anyone:
        stream = open_stream(anyone, f"{path}/stream?after=0")
        wait_for(lambda: b'hx-get="?part=pictures"' in b"".join(stream.chunks))
        shown = b"".join(stream.chunks).decode()
    assert "Followed from outside" in shown
    assert shown.count('class="turn turn-live"') >= 5
    for absent in ("<form", "hx-post", "/stop", "Skip", "composer", "session-cost"):
        assert absent not in shown, absent


def test_the_owner_shares_from_the_page_without_javascript(crew: Team) -> None:
    with crew.cookie_client("bob") as bob, stranger(crew) as anyone:
        session_id = finished_session(bob, "Shared by hand")
        assert f'href="/s/{session_id}/share"' in bob.get(f"/s/{session_id}").text
        before = bob.get(f"/s/{session_id}/share")
        assert "Create a read-only link" in before.text and "Stop sharing" not in before.text
        made = bob.post(f"/s/{session_id}/share")
        assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
        [link] = re.findall(r'id="share-link"[^>]* value="([^"]+)"', made.text)
        assert link.startswith(crew.server.url + "/shared/")
        assert anyone.get(link).status_code == 200
        after = bob.get(f"/s/{session_id}/share")
        assert "Shared since" in after.text and link not in after.text
        stopped = bob.post(f"/s/{session_id}/unshare", follow_redirects=False)
        assert stopped.status_code == 303
        assert "no longer shared" in bob.get(stopped.headers["location"]).text
        assert anyone.get(link).status_code == 404


def test_the_access_log_hides_the_link() -> None:
    config = uvicorn_config("text", LogIds(), LOGGING_CONFIG)
    assert config is not None
    assert "shared_links" in config["loggers"]["uvicorn.access"]["filters"]
    assert "filters" not in LOGGING_CONFIG["loggers"]["uvicorn.access"]
    # A line as uvicorn's access log makes it.
    args = ("127.0.0.1:5000", "GET", "/shared/W3nAbc_-x/stream?after=3", "1.1", 200)
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None
    )
    assert SharedLinkFilter().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /shared/…/stream?after=3 HTTP/1.1" 200'
