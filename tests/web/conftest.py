"""The apps the web tests share: in this process for what ends (``tests/inprocess.py``),
real servers for what needs a socket (``tests/live.py``, in a thread: they start in
milliseconds, so each xdist worker has its own), where the offline model's pace is what
sets them apart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests import inprocess
from tests.inprocess import InProcess
from tests.live import LiveServer, serve_in_thread, stop_server
from tests.web.seed import Seeded, seed

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright: one for each browser test module."""
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's chromium: make system-packages")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """The app in this process, the offline model as fast as it goes."""
    config = inprocess.settings(tmp_path_factory.mktemp("app"))
    with inprocess.running(config) as app:
        yield app


@pytest.fixture(scope="session")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The offline model as fast as it goes; heartbeats every half second."""
    server = serve_in_thread(tmp_path_factory.mktemp("fast"), offline_tps="0", heartbeat="0.5")
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def paced_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """100 deltas a second: faster than a viewer needs (30), slow enough to watch."""
    server = serve_in_thread(tmp_path_factory.mktemp("paced"), offline_tps="100")
    yield server
    stop_server(server)


@dataclass
class SeededServer:
    server: LiveServer | InProcess
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
    server = serve_in_thread(where, offline_tps="0")
    yield SeededServer(server, sessions)
    stop_server(server)


@pytest.fixture(scope="session")
def seeded_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededServer]:
    """The same database as :func:`seeded`'s, the app in this process."""
    where = tmp_path_factory.mktemp("seeded-app")
    sessions = seed(where / "psyche.db", SEEDED_COUNT, interrupted=(SEEDED_INTERRUPTED,))
    with inprocess.running(inprocess.settings(where)) as app:
        yield SeededServer(app, sessions)
