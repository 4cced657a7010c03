"""Servers with accounts, and clients signed in to them: what the accounts tests share."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from psyche_sse.accounts import Accounts, Passwords, parse_token
from psyche_sse.store import Store
from tests.live import LiveServer, environ, run_psyche, serve_in_thread, stop_server

PASSWORDS = {
    "alice": "alice-password",  # the first user: an admin
    "bob": "bob-password",
    "carol": "carol-password",
}


@dataclass
class Team:
    """A server with the users of :data:`PASSWORDS`, and an API token for each."""

    server: LiveServer
    db: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def token_client(self, name: str, **kwargs: Any) -> Iterator[httpx.Client]:
        """A client sending ``name``'s API token."""
        headers = {"Authorization": f"Bearer {self.tokens[name]}"}
        with self.server.client(headers=headers, **kwargs) as client:
            yield client

    @contextmanager
    def cookie_client(self, name: str, **kwargs: Any) -> Iterator[httpx.Client]:
        """A client signed in as ``name`` through the login form: it holds the cookie."""
        with self.server.client(**kwargs) as client:
            sign_in(client, name, PASSWORDS[name])
            yield client


def add_users(db: Path) -> dict[str, str]:
    """The users of :data:`PASSWORDS` in the database ``db``, and a token for each."""
    store = Store.open(db)
    try:
        accounts = Accounts(store, Passwords())
        tokens = {}
        for name, password in PASSWORDS.items():
            accounts.add_user(name, password)
            tokens[name] = accounts.create_token("tests", name)[1]
        return tokens
    finally:
        store.close()


@contextmanager
def team(where: Path, **settings: str) -> Iterator[Team]:
    db = where / "psyche.db"
    tokens = add_users(db)
    server = serve_in_thread(where, **settings)
    try:
        yield Team(server, db, tokens)
    finally:
        stop_server(server)


def sign_in(client: httpx.Client, name: str, password: str, **headers: str) -> httpx.Response:
    response = client.post(
        "/login",
        data={"name": name, "password": password, "next": "/"},
        headers=headers,
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert "psyche_login" in client.cookies
    return response


def cli(db: Path, *args: str, stdin: str = "a-long-password\n") -> subprocess.CompletedProcess[str]:
    """``psyche-sse ARGS`` as a process of its own, on the database ``db``, with ``stdin``."""
    (db.parent / "none.toml").write_text("")
    env = environ(PSYCHE_DB=str(db), PSYCHE_CONFIG=str(db.parent / "none.toml"))
    return run_psyche(env, *args, stdin=stdin)


def token_id(token: str) -> int:
    parsed = parse_token(token)
    assert parsed is not None
    return parsed[0]


@dataclass
class OpenStream:
    """A stream read in a thread until it ends."""

    status: int | None = None
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False
    error: BaseException | None = None
    thread: threading.Thread | None = None


def open_stream(client: httpx.Client, url: str) -> OpenStream:
    seen = OpenStream()

    def read() -> None:
        try:
            with client.stream("GET", url) as response:
                seen.status = response.status_code
                for chunk in response.iter_bytes():
                    seen.chunks.append(chunk)
            seen.ended = True
        except BaseException as exc:
            seen.error = exc

    seen.thread = threading.Thread(target=read, daemon=True)
    seen.thread.start()
    return seen
