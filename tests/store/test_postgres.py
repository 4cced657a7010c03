"""PostgreSQL as the store, beyond the suite every backend runs: the service on it for real
(a round over SSE, read back, and read again after a restart), and one clear line, with
no password in it, for a URL that cannot be used."""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from tests import postgres
from tests.live import serve_in_thread, stop_server
from tests.postgres import PASSWORD, PostgresServer
from tests.waiting import wait_for
from tests.web.sse import assert_whole_round, finals, messages, texts

from psyche_sse.accounts import Accounts
from psyche_sse.cli import main
from psyche_sse.config import load_settings
from psyche_sse.errors import ConfigError
from psyche_sse.store import Store, StoreError, queries
from psyche_sse.store import accounts as sql
from psyche_sse.store.accounts import UserRecord
from psyche_sse.store.connection import Connection
from psyche_sse.store.postgres import redact

SECRET = "s3cret-p4ss"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://psyche:s3cret-p4ss@db:5432/psyche",
            "postgresql://psyche:***@db:5432/psyche",
        ),
        (
            "postgres://u:s3cret-p4ss@[::1]/x?sslmode=require",
            "postgres://u:***@[::1]/x?sslmode=require",
        ),
        ("postgresql://db/x?user=u&password=s3cret-p4ss", "postgresql://db/x?user=u&password=***"),
        ("postgresql://u@db/x", "postgresql://u@db/x"),
        ("postgresql:///x?host=/run/postgresql", "postgresql:///x?host=/run/postgresql"),
    ],
)
def test_the_password_is_redacted_from_the_url(url: str, shown: str) -> None:
    assert redact(url) == shown


def refused_port() -> int:
    """A loopback port nothing listens on (just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bad_urls(postgres_server: PostgresServer, postgres_url: str) -> dict[str, tuple[str, str]]:
    """Each way a URL can fail: (the URL, what the message says)."""
    database = postgres_url.rsplit("/", 1)[1]
    return {
        "wrong password": (
            postgres_server.url(database, password=SECRET),
            'password authentication failed for user "psyche"',
        ),
        "no server": (
            f"postgresql://psyche:{SECRET}@127.0.0.1:{refused_port()}/x",
            "cannot connect: connection failed",
        ),
        "no such database": (
            postgres_server.url("nowhere"),
            'database "nowhere" does not exist',
        ),
        "bad port": (f"postgresql://psyche:{SECRET}@127.0.0.1:notaport/x", "notaport"),
        "bad escape": ("postgresql://psyche:s3cret%zz@127.0.0.1/x", "not a valid URL"),
    }


@pytest.mark.parametrize(
    "case", ["wrong password", "no server", "no such database", "bad port", "bad escape"]
)
def test_an_unusable_url_is_one_clear_line_without_the_password(
    bad_urls: dict[str, tuple[str, str]],
    case: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, message = bad_urls[case]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    text = str(caught.value)
    assert message in text and text.startswith(f"database {redact(url)}: ")
    assert "\n" not in text and "s3cret" not in text and PASSWORD not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

    # And `serve` refuses to start: one line, exit 2.
    monkeypatch.setenv("PSYCHE_DATABASE_URL", url)
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert "s3cret" not in err and PASSWORD not in err and "Traceback" not in err
    assert "s3cret" not in caplog.text and PASSWORD not in caplog.text


def test_a_url_of_another_database_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PSYCHE_DATABASE_URL", f"mysql://root:{SECRET}@db/psyche")
    with pytest.raises(ConfigError, match="must be a postgresql:// URL") as caught:
        load_settings()
    assert SECRET not in str(caught.value)
    monkeypatch.setenv("PSYCHE_DATABASE_URL", "")  # empty: unset, the SQLite file is used
    assert load_settings().database() == str(load_settings().db)


def test_the_password_is_never_logged(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    Store.open(postgres_url).close()
    assert "migration step(s) applied" in caplog.text
    assert PASSWORD not in caplog.text and redact(postgres_url) in caplog.text


@pytest.fixture
def token(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """An API token of the database's first user (an admin), made with ``psyche-sse user``
    and ``token`` on PostgreSQL: with a user, the server lets no request in without one."""
    monkeypatch.setenv("PSYCHE_DATABASE_URL", postgres_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-password\n"))
    assert main(["user", "add", "ada", "--password-stdin"]) == 0
    capsys.readouterr()
    assert main(["token", "create", "tests", "--user", "ada"]) == 0
    secret = capsys.readouterr().out.strip()
    store = Store.open(postgres_url)
    try:
        [user] = Accounts(store).users()
        assert (user.name, user.admin) == ("ada", True)
        assert [t.name for t in Accounts(store).tokens("ada")] == ["tests"]
    finally:
        store.close()
    monkeypatch.delenv("PSYCHE_DATABASE_URL")
    return secret


def test_the_service_runs_on_postgresql_and_reads_back_after_a_restart(
    postgres_url: str, token: str, tmp_path: Path
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    server = serve_in_thread(tmp_path, database_url=postgres_url, offline_tps="0")
    try:
        with httpx.Client(base_url=server.url, timeout=15.0, headers=auth) as client:
            body = {"situation": "My sister borrowed money and never paid it back"}
            with connect_sse(client, "POST", "/api/rounds", json=body) as source:
                msgs = list(messages(source))
            the_round = assert_whole_round(msgs)
            session_id = the_round[0].data["session_id"]
            streamed, completes = texts(msgs), finals(msgs)
            before = read_back(client, session_id, streamed, completes)
            assert not Path(tmp_path / "psyche.db").exists()  # nothing went to SQLite
    finally:
        stop_server(server)

    server = serve_in_thread(tmp_path, database_url=postgres_url, offline_tps="0")
    try:
        with httpx.Client(base_url=server.url, timeout=15.0, headers=auth) as client:
            assert read_back(client, session_id, streamed, completes) == before
            # The session goes on where it was, its event ids after the old ones.
            body = {"situation": "And now she asks for more", "session_id": session_id}
            with connect_sse(client, "POST", "/api/rounds", json=body) as source:
                more = list(messages(source))
            assert more[0].id > max(m.id for m in msgs)
            session = client.get(f"/api/sessions/{session_id}").json()
            assert [r["status"] for r in session["rounds"]] == ["ok", "ok"]
    finally:
        stop_server(server)


def read_back(
    client: httpx.Client,
    session_id: str,
    streamed: dict[str, str],
    finals: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The session as the list, the transcript and the exports give it; checks they agree
    with what was streamed, and returns the JSON export (but for its last event id)."""
    listed = client.get("/api/sessions").json()
    assert [s["id"] for s in listed["sessions"]] == [session_id] and listed["total"] == 1
    assert listed["sessions"][0]["rounds"] == 1 and listed["sessions"][0]["last_status"] == "ok"
    session = client.get(f"/api/sessions/{session_id}").json()
    [rnd] = session["rounds"]
    assert rnd["status"] == "ok" and len(rnd["turns"]) == 5
    assert {t["id"]: t["text"] for t in rnd["turns"]} == streamed
    assert [t["status"] for t in rnd["turns"]] == ["ok"] * 5
    # Booleans come back as booleans, as they were streamed.
    assert {t["id"]: t["has_memory"] for t in rnd["turns"]} == {
        turn: final["metadata"]["has_memory"] for turn, final in finals.items()
    }
    exported = client.get(f"/api/sessions/{session_id}/export.json")
    assert exported.status_code == 200
    markdown = client.get(f"/api/sessions/{session_id}/export.md").text
    assert all(text.split()[0] in markdown for text in streamed.values())
    saved: dict[str, Any] = exported.json()
    # What a restart changes: the ids reserved past the last event, for the next ones.
    saved.pop("last_event_id")
    return saved


def test_the_store_carries_on_after_the_server_restarts() -> None:
    """Every pooled connection dies with the server; the next piece of work gets a new one
    (each is checked before use), so a restart of PostgreSQL costs no failed request."""
    server = postgres.start()  # its own: the one the other tests share keeps running
    try:
        url = server.create_database()
        store = Store.open(url)
        try:
            store.write_now(
                lambda c: queries.reserve_ids(
                    c, session_id="s", ceiling=1000, title="Before", now="2026-11-30"
                )
            )
            postgres.restart(server)
            assert store.run_blocking(queries.count_sessions) == 1
            store.write_now(lambda c: queries.rename_session(c, session_id="s", title="After"))
            [summary] = store.run_blocking(queries.list_sessions)
            assert summary.title == "After"
        finally:
            store.close()
    finally:
        postgres.stop(server)


def test_two_users_added_at_once_make_one_first_admin(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    """The first user is the admin: a second added while the first's transaction is still
    open waits for it, then counts it."""
    first, second = Store.open(postgres_url), Store.open(postgres_url)
    inserted, go = threading.Event(), threading.Event()
    added: list[UserRecord] = []

    def add(name: str, conn: Connection) -> None:
        user, _ = sql.insert_user(conn, name=name, password_hash="h", admin=False, now="now")
        added.append(user)

    def ada_then_wait(conn: Connection) -> None:
        add("ada", conn)
        inserted.set()
        assert go.wait(30)

    def waiting_on_a_lock() -> bool:
        with postgres_server.admin() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ).fetchone()
        return bool(row and row[0])

    try:
        ada = threading.Thread(target=first.write_now, args=(ada_then_wait,))
        ada.start()
        assert inserted.wait(30)
        ben = threading.Thread(target=second.write_now, args=(partial(add, "ben"),))
        ben.start()
        wait_for(waiting_on_a_lock)  # ben's transaction waits for ada's
        go.set()
        ada.join(30)
        ben.join(30)
        assert [(u.name, u.admin) for u in added] == [("ada", True), ("ben", False)]
    finally:
        go.set()
        first.close()
        second.close()
