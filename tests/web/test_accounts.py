"""Accounts against a running server: signing in, whose sessions each user reaches through
every route, the origin check on a signed-in browser, slowing down password guessing,
revocation that ends open streams, and the limits per user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from psyche_sse.web.access import SIGNED_OUT
from tests.waiting import wait_for
from tests.web.accounts import PASSWORDS, Team, cli, open_stream, sign_in, team, token_id
from tests.web.sse import finished_session, start_round

UNKNOWN = "0123456789abcdef"


@pytest.fixture(scope="module")
def crew(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    with team(tmp_path_factory.mktemp("crew"), offline_tps="0", heartbeat="0.5") as t:
        yield t


@pytest.fixture(scope="module")
def bobs(crew: Team) -> str:
    """A session of bob's, one round run to its end."""
    with crew.token_client("bob") as client:
        return finished_session(client, "Bob's private worry")


# --- not signed in -----------------------------------------------------------------------


def test_pages_send_a_stranger_to_the_login_page(crew: Team) -> None:
    with crew.server.client() as client:
        page = client.get("/sessions?page=2", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/sessions%3Fpage%3D2"
        login = client.get(page.headers["location"])
    assert login.status_code == 200
    assert 'name="password"' in login.text
    assert 'value="/sessions?page=2"' in login.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/sessions"),
        ("GET", f"/api/sessions/{UNKNOWN}/events"),
        ("POST", "/api/rounds"),
        ("GET", "/metrics"),
    ],
)
def test_the_api_asks_a_stranger_for_a_token(crew: Team, method: str, path: str) -> None:
    with crew.server.client() as client:
        data = {"situation": "x"} if method == "POST" else None
        response = client.request(method, path, data=data)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "unauthorized"


def test_a_wrong_token_is_a_401_even_with_a_good_cookie(crew: Team) -> None:
    with crew.cookie_client("bob") as client:
        assert client.get("/api/sessions").status_code == 200
        forged = {"Authorization": "Bearer psy_1_" + "x" * 43}
        response = client.get("/api/sessions", headers=forged)
    assert response.status_code == 401


def test_the_page_stream_tells_a_stranger_and_ends(crew: Team, bobs: str) -> None:
    with crew.server.client() as client:
        response = client.get(f"/s/{bobs}/stream", headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    assert "You are signed out" in response.text
    assert "event: end" in response.text
    assert "Bob" not in response.text


@pytest.mark.parametrize("path", ["/healthz", "/static/psyche.css", "/login"])
def test_what_stays_public(crew: Team, path: str) -> None:
    with crew.server.client() as client:
        assert client.get(path).status_code == 200


def test_a_wrong_password_is_refused_without_saying_which_part(crew: Team) -> None:
    with crew.server.client() as client:
        wrong = client.post("/login", data={"name": "bob", "password": "not-his-password"})
        nobody = client.post("/login", data={"name": "nobody", "password": "not-his-password"})
    assert wrong.status_code == nobody.status_code == 401
    assert "Wrong name or password." in wrong.text and "Wrong name or password." in nobody.text
    assert "psyche_login" not in wrong.cookies


def test_the_login_cookie_is_http_only_and_same_site(crew: Team) -> None:
    with crew.server.client() as client:
        response = sign_in(client, "bob", PASSWORDS["bob"])
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # PSYCHE_COOKIE_SECURE is for servers behind TLS
    assert PASSWORDS["bob"] not in response.headers["set-cookie"]


def test_login_goes_back_where_it_was_sent_from_and_nowhere_else(crew: Team) -> None:
    with crew.server.client() as client:
        for asked, lands in [
            ("/sessions", "/sessions"),
            ("//evil.example/", "/"),
            ("https://evil.example/", "/"),
            ("/\\evil.example", "/"),
        ]:
            response = client.post(
                "/login",
                data={"name": "bob", "password": PASSWORDS["bob"], "next": asked},
                follow_redirects=False,
            )
            assert response.headers["location"] == lands, asked


def test_the_page_shows_who_is_signed_in_and_signing_out_ends_it(crew: Team) -> None:
    with crew.cookie_client("carol") as client:
        page = client.get("/")
        assert page.status_code == 200
        assert 'class="account-name"' in page.text and ">carol<" in page.text
        out = client.post("/logout", follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert "psyche_login" not in client.cookies
        assert client.get("/", follow_redirects=False).status_code == 303


# --- each user's own sessions -----------------------------------------------------------


ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/sessions/{id}", {}),
    ("GET", "/api/sessions/{id}/events", {}),
    ("GET", "/api/sessions/{id}/export.json", {}),
    ("GET", "/api/sessions/{id}/export.md", {}),
    ("GET", "/api/sessions/{id}/export.html", {}),
    ("PATCH", "/api/sessions/{id}", {"json": {"title": "Mine now"}}),
    ("POST", "/api/sessions/{id}/stop", {"json": {}}),
    ("POST", "/api/sessions/{id}/stimulus", {"json": {"text": "Boo"}}),
    (
        "POST",
        "/api/rounds",
        {"json": {"session_id": "{id}"}, "headers": {"Accept": "application/json"}},
    ),
    ("GET", "/s/{id}", {}),
    ("GET", "/s/{id}/stream", {"headers": {"Accept": "text/event-stream"}}),
    ("GET", "/s/{id}/pictures", {}),
    ("POST", "/s/{id}/stop", {"data": {}}),
    ("POST", "/s/{id}/stimulus", {"data": {"text": "Boo"}}),
    ("POST", "/rounds", {"data": {"session_id": "{id}", "continue": "1"}}),
    ("GET", "/s/{id}/rename", {}),
    ("POST", "/s/{id}/rename", {"data": {"title": "Mine now"}}),
    ("GET", "/s/{id}/delete", {}),
    ("POST", "/s/{id}/delete", {"data": {"confirm": "yes"}}),
    ("DELETE", "/api/sessions/{id}", {}),
]


def _filled(value: Any, session_id: str) -> Any:
    if isinstance(value, str):
        return value.replace("{id}", session_id)
    if isinstance(value, dict):
        return {k: _filled(v, session_id) for k, v in value.items()}
    return value


def _ask(
    client: httpx.Client, method: str, path: str, options: dict[str, Any], session_id: str
) -> httpx.Response:
    return client.request(
        method, _filled(path, session_id), follow_redirects=False, **_filled(options, session_id)
    )


@pytest.mark.parametrize("how", ["cookie", "token"])
def test_another_users_session_is_an_unknown_one_through_every_route(
    crew: Team, bobs: str, how: str
) -> None:
    signed_in = crew.cookie_client("carol") if how == "cookie" else crew.token_client("carol")
    with signed_in as carol:
        for method, path, options in ROUTES:
            theirs = _ask(carol, method, path, options, bobs)
            unknown = _ask(carol, method, path, options, UNKNOWN)
            assert theirs.status_code == unknown.status_code, (method, path, theirs.text)
            assert theirs.text == unknown.text, (method, path)
            assert theirs.status_code == 404 or "there is no session" in theirs.text, (method, path)
            assert "Bob" not in theirs.text, (method, path)
        listed = carol.get("/api/sessions").json()
        page = carol.get("/sessions").text
    assert bobs not in {s["id"] for s in listed["sessions"]}
    assert bobs not in page
    # Nothing carol sent changed it.
    with crew.token_client("bob") as bob:
        mine = bob.get(f"/api/sessions/{bobs}")
        assert mine.status_code == 200
        assert mine.json()["title"] == "Bob's private worry"
        assert len(mine.json()["rounds"]) == 1
        assert bobs in {s["id"] for s in bob.get("/api/sessions").json()["sessions"]}


def test_lists_and_counts_are_each_users_own(crew: Team, bobs: str) -> None:
    with crew.token_client("carol") as carol:
        body = start_round(carol, "Carol's own")
        listed = carol.get("/api/sessions").json()
    assert [s["id"] for s in listed["sessions"]] == [body["session_id"]]
    assert listed["total"] == 1


def test_an_admin_sees_every_session(crew: Team, bobs: str) -> None:
    with crew.cookie_client("alice") as alice:
        assert bobs in {s["id"] for s in alice.get("/api/sessions?limit=100").json()["sessions"]}
        assert alice.get(f"/api/sessions/{bobs}").status_code == 200
        assert alice.get(f"/s/{bobs}").status_code == 200
        assert bobs in alice.get("/sessions").text


# --- a stolen cookie from another origin ------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "options"),
    [
        ("POST", "/rounds", {"data": {"situation": "Forged"}}),
        ("POST", "/api/rounds", {"json": {"situation": "Forged"}}),
        ("DELETE", "/api/sessions/{id}", {}),
        ("POST", "/s/{id}/delete", {"data": {"confirm": "yes"}}),
        ("POST", "/logout", {"data": {"everywhere": "1"}}),
    ],
)
def test_a_signed_in_browser_cannot_be_made_to_write_from_another_origin(
    crew: Team, bobs: str, method: str, path: str, options: dict[str, Any]
) -> None:
    with crew.cookie_client("bob") as bob:
        forged = dict(options)
        forged["headers"] = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
        response = _ask(bob, method, path, forged, bobs)
        assert response.status_code == 403, response.text
        assert bob.get(f"/api/sessions/{bobs}").status_code == 200
        assert bob.get("/api/sessions").status_code == 200  # still signed in


# --- slowing down guesses -----------------------------------------------------------------


def _from(team: Team, address: str) -> httpx.Client:
    return team.server.client(transport=httpx.HTTPTransport(local_address=address))


def _guess(team: Team, address: str, name: str, password: str) -> httpx.Response:
    with _from(team, address) as client:
        return client.post(
            "/login", data={"name": name, "password": password}, follow_redirects=False
        )


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Team]:
    with team(tmp_path, offline_tps="0") as t:
        yield t


def test_failed_logins_are_slowed_per_address(guarded: Team) -> None:
    for n in range(5):
        assert _guess(guarded, "127.0.0.2", f"guess{n}", "wrong-password").status_code == 401
    refused = _guess(guarded, "127.0.0.2", "alice", PASSWORDS["alice"])
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "Too many failed sign-ins" in refused.text
    # Another address signs in; its success does not clear the first address's count.
    assert _guess(guarded, "127.0.0.3", "alice", PASSWORDS["alice"]).status_code == 303
    assert _guess(guarded, "127.0.0.2", "alice", PASSWORDS["alice"]).status_code == 429


def test_failed_logins_are_slowed_per_user(guarded: Team) -> None:
    for n in range(5):
        wrong = _guess(guarded, f"127.0.1.{n + 1}", "bob", "wrong-password")
        assert wrong.status_code == 401
    refused = _guess(guarded, "127.0.2.1", "bob", PASSWORDS["bob"])
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    # Other users, from that address, are not held up.
    assert _guess(guarded, "127.0.2.1", "carol", PASSWORDS["carol"]).status_code == 303


# --- revocation, at once ------------------------------------------------------------------


def test_a_revoked_token_stops_working_and_its_open_stream_ends(guarded: Team) -> None:
    token = guarded.tokens["bob"]
    with guarded.token_client("bob") as bob:
        session_id = finished_session(bob, "Watched")
        stream = open_stream(bob, f"/api/sessions/{session_id}/events")
        wait_for(lambda: stream.status == 200 and stream.chunks)
        revoked = cli(guarded.db, "token", "revoke", str(token_id(token)))
        assert revoked.returncode == 0, revoked.stderr
        wait_for(lambda: stream.ended or stream.error is not None, timeout=20)
        assert stream.error is None and stream.ended
        assert bob.get("/api/sessions").status_code == 401
    # The user's other credentials still work.
    with guarded.cookie_client("bob") as cookie:
        assert cookie.get(f"/api/sessions/{session_id}").status_code == 200


def test_a_removed_users_cookie_stops_working_and_its_page_stream_ends(guarded: Team) -> None:
    with guarded.cookie_client("carol") as carol:
        body = start_round(carol, "Carol's, soon gone")
        wait_for(lambda: carol.get(f"/api/sessions/{body['session_id']}").json()["rounds"])
        stream = open_stream(carol, f"/s/{body['session_id']}/stream")
        wait_for(lambda: stream.status == 200 and stream.chunks)
        removed = cli(guarded.db, "user", "remove", "carol")
        assert removed.returncode == 0, removed.stderr
        wait_for(lambda: stream.ended or stream.error is not None, timeout=20)
        assert stream.error is None
        assert carol.get("/", follow_redirects=False).status_code == 303
        again = carol.get(
            f"/s/{body['session_id']}/stream", headers={"Accept": "text/event-stream"}
        )
        assert SIGNED_OUT in again.text and "event: end" in again.text


def test_signing_out_everywhere_ends_the_users_other_browsers(guarded: Team) -> None:
    with guarded.cookie_client("bob") as laptop, guarded.cookie_client("bob") as phone:
        session_id = finished_session(laptop, "Two browsers")
        stream = open_stream(phone, f"/api/sessions/{session_id}/events")
        wait_for(lambda: stream.status == 200 and stream.chunks)
        out = laptop.post("/logout", data={"everywhere": "1"}, follow_redirects=False)
        assert out.status_code == 303
        wait_for(lambda: stream.ended or stream.error is not None, timeout=20)
        assert stream.error is None
        assert phone.get("/api/sessions").status_code == 401
    with guarded.token_client("bob") as token:  # tokens are not cookies: still good
        assert token.get("/api/sessions").status_code == 200


def test_a_token_created_a_moment_ago_works_at_once(guarded: Team) -> None:
    made = cli(guarded.db, "token", "create", "fresh", "--user", "carol")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("psy_")
    with guarded.server.client(headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get("/api/sessions").status_code == 200


# --- limits per user ----------------------------------------------------------------------


def test_rounds_started_per_minute_are_limited_per_user(tmp_path: Path) -> None:
    with team(tmp_path, offline_tps="0", user_rounds_per_minute="2", user_running_rounds="0") as t:
        with t.token_client("bob") as bob:
            for n in range(2):
                finished_session(bob, f"Quick {n}")
            over = bob.post(
                "/api/rounds",
                json={"situation": "One too many"},
                headers={"Accept": "application/json"},
            )
            assert over.status_code == 429
            assert 1 <= int(over.headers["retry-after"]) <= 60
            assert "in the last minute" in over.json()["error"]["message"]
            # In the page: the message in the composer's error line.
            page = bob.post(
                "/rounds", data={"situation": "From the page"}, headers={"HX-Request": "true"}
            )
            assert page.status_code == 429 and "composer-error" in page.text
            assert "in the last minute" in page.text
        with t.token_client("carol") as carol:  # another user has a minute of their own
            assert start_round(carol, "Carol's turn")["session_id"]


def test_rounds_running_at_once_are_limited_per_user(tmp_path: Path) -> None:
    with (
        team(tmp_path, offline_tps="2", user_running_rounds="1") as t,
        t.token_client("bob") as bob,
    ):
        first = start_round(bob, "A slow one")
        over = bob.post(
            "/api/rounds", json={"situation": "Another"}, headers={"Accept": "application/json"}
        )
        assert over.status_code == 429, over.text
        assert over.headers["retry-after"].isdigit()
        assert "at once" in over.json()["error"]["message"]
        with t.token_client("carol") as carol:
            assert start_round(carol, "Carol is not held up")["session_id"]
        assert bob.post(f"/api/sessions/{first['session_id']}/stop").status_code == 200
        wait_for(lambda: not bob.get(f"/api/sessions/{first['session_id']}").json()["running"])
        assert start_round(bob, "Now there is room")["session_id"]


# --- the server's own life ----------------------------------------------------------------


def test_a_sign_in_survives_a_restart(tmp_path: Path) -> None:
    """The cookie's signing key is kept in the database when none is configured."""
    from tests.live import serve_in_thread, stop_server

    with team(tmp_path, offline_tps="0") as t, t.cookie_client("bob") as bob:
        cookie = bob.cookies["psyche_login"]
    again = serve_in_thread(tmp_path, offline_tps="0")
    try:
        with again.client(cookies={"psyche_login": cookie}) as client:
            assert client.get("/api/sessions").status_code == 200
    finally:
        stop_server(again)


def test_an_exposed_server_with_no_accounts_answers_nothing(tmp_path: Path) -> None:
    """The app itself refuses, should it run on such an address anyway (the last user
    removed while it runs, say): ``serve`` already refuses to start so."""
    from tests import inprocess

    config = inprocess.settings(tmp_path, host="0.0.0.0", allowed_hosts=("*",))
    with inprocess.running(config) as app, app.client() as client:
        refused = client.get("/api/sessions")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "no_accounts"
        assert client.get("/").status_code == 503
        assert client.get("/healthz").status_code == 200


def test_the_first_user_ends_the_local_users_streams_and_asks_for_a_sign_in(
    tmp_path: Path,
) -> None:
    from tests.live import serve_in_thread, stop_server

    server = serve_in_thread(tmp_path, offline_tps="0", heartbeat="0.5")
    try:
        with server.client() as local:
            session_id = finished_session(local, "Before accounts")
            stream = open_stream(local, f"/api/sessions/{session_id}/events")
            wait_for(lambda: stream.status == 200 and stream.chunks)
            added = cli(tmp_path / "psyche.db", "user", "add", "ada", "--password-stdin")
            assert added.returncode == 0, added.stderr
            wait_for(lambda: stream.ended or stream.error is not None, timeout=20)
            assert stream.error is None
            assert local.get("/api/sessions").status_code == 401
            sign_in(local, "ada", "a-long-password")
            # The session made before became the first user's.
            assert local.get(f"/api/sessions/{session_id}").status_code == 200
    finally:
        stop_server(server)


def test_a_configured_key_signs_the_cookie_and_secure_marks_it(tmp_path: Path) -> None:
    from tests import inprocess
    from tests.web.accounts import add_users

    add_users(tmp_path / "psyche.db")
    one = inprocess.settings(tmp_path, secret_key="first key", cookie_secure=True)
    with inprocess.running(one) as app, app.client() as client:
        signed = client.post(
            "/login",
            data={"name": "bob", "password": PASSWORDS["bob"]},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        assert "secure" in signed.headers["set-cookie"].lower()
        cookie = signed.cookies["psyche_login"]
        assert client.get("/api/sessions", cookies={"psyche_login": cookie}).status_code == 200
    two = inprocess.settings(tmp_path, secret_key="another key")
    with inprocess.running(two) as app, app.client() as client:
        refused = client.get("/api/sessions", cookies={"psyche_login": cookie})
        assert refused.status_code == 401
