"""Real servers for the web tests that need a socket (see ``tests/live.py``), shared by the
session: the offline model's pace is what sets them apart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.live import LiveServer, start_server, stop_server
from tests.web.seed import Seeded, seed


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
