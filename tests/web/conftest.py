"""Real servers for the web tests: ``python -m psyche_sse serve`` on a free loopback port.

Event streams never end, and ASGITransport buffers a response until it does, so these tests
talk to uvicorn over a socket. Each server runs in its own process with its own settings
(the offline model's pace, above all) and its own database; it binds port 0 and reports the
port it got, so there is no race for a free port.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.web.seed import Seeded, seed

START_TIMEOUT = 30.0
_READY = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=httpx.Timeout(15.0), **kwargs)  # type: ignore[arg-type]


def start_server(
    db_dir: Path, env_extra: dict[str, str] | None = None, **settings: str
) -> LiveServer:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSYCHE_")}
    env.update(env_extra or {})
    env.update(
        PSYCHE_HOST="127.0.0.1",
        PSYCHE_PORT="0",
        PSYCHE_DB=str(db_dir / "psyche.db"),
        PSYCHE_CONFIG=str(db_dir / "none.toml"),
    )
    (db_dir / "none.toml").write_text("")
    env.update({f"PSYCHE_{k.upper()}": v for k, v in settings.items()})
    process = subprocess.Popen(
        [sys.executable, "-m", "psyche_sse", "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    lines: list[str] = []
    ready = threading.Event()
    found: list[str] = []

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:  # keeps reading, so the pipe never fills up
            lines.append(line)
            match = _READY.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    started = ready.wait(START_TIMEOUT) and bool(found)
    server = LiveServer(found[0] if found else "", process, lines, reader)
    if not started:
        stop_server(server)
        raise RuntimeError("the server did not start:\n" + server.log)
    return server


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    if server.reader is not None:
        server.reader.join(5)
    if server.process.stderr is not None:
        server.process.stderr.close()
    if os.environ.get("WEB_TEST_SERVER_LOG"):
        print(f"\n--- server {server.url} ---\n{server.log}")


def kill_server(server: LiveServer) -> None:
    """SIGKILL: a crash, with no chance to save or mark anything."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    stop_server(server)  # closes its pipes


@pytest.fixture(scope="session")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The offline model as fast as it goes; heartbeats every half second."""
    server = start_server(tmp_path_factory.mktemp("fast"), offline_tps="0", heartbeat="0.5")
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def paced_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """100 deltas a second: faster than a viewer needs (30), slow enough to watch."""
    server = start_server(tmp_path_factory.mktemp("paced"), offline_tps="100")
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def failing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Persona's provider refuses every connection (port 9 on loopback: nothing listens), so
    its call fails every time, while the others answer on the offline model."""
    server = start_server(
        tmp_path_factory.mktemp("failing"),
        env_extra={"OPENAI_API_KEY": "sk-test-not-a-real-key"},
        offline_tps="0",
        model_persona="openai/gpt-4o-mini",
        api_base="http://127.0.0.1:9/v1",
        retry_attempts="1",
    )
    yield server
    stop_server(server)


@dataclass
class SeededServer:
    server: LiveServer
    sessions: list[Seeded]  # oldest activity first

    @property
    def interrupted(self) -> Seeded:
        return self.sessions[SEEDED_INTERRUPTED]


SEEDED_COUNT = 45
SEEDED_INTERRUPTED = 44


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededServer]:
    """A server on a database written beforehand: 45 sessions (a minute apart), the newest
    cut off by a crash in its second round. Only read it: the tests count on its order."""
    where = tmp_path_factory.mktemp("seeded")
    sessions = seed(where / "psyche.db", SEEDED_COUNT, interrupted=(SEEDED_INTERRUPTED,))
    server = start_server(where, offline_tps="0")
    yield SeededServer(server, sessions)
    stop_server(server)
