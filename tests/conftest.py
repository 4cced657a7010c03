"""Shared fixtures: anyio runs async tests on asyncio, the loop the service runs on; a real
PostgreSQL server and a real Redis (one each per test process), with a fresh database or an
empty Redis for each test that asks; buses of each kind for the bus contract."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from psyche_sse.bus import EventBus, MemoryBus
from psyche_sse.config import DEFAULT_HISTORY_EVENTS
from psyche_sse.redisbus import RedisBus
from tests import postgres
from tests.redis_server import RedisServer, redis_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own PSYCHE_* variables or writes the default database."""
    for key in list(os.environ):
        if key.startswith("PSYCHE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PSYCHE_DB", str(tmp_path / "psyche.db"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    server = postgres.start()
    try:
        yield server
    finally:
        postgres.stop(server)


@pytest.fixture
def postgres_url(postgres_server: postgres.PostgresServer) -> Iterator[str]:
    """The URL of a new empty PostgreSQL database, dropped after the test."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the tests of a test process (flushed by :func:`redis_url`)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_service: RedisServer) -> str:
    """The URL of an empty Redis."""
    redis_service.flush()
    return redis_service.url


BusMaker = Callable[..., Awaitable[EventBus]]


@pytest.fixture(params=["memory", "redis"])
async def new_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusMaker]:
    """Makes buses of one kind (the in-memory one, then the one on a real Redis), closed
    after the test: the contract every bus keeps is tested on each."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with AsyncExitStack() as stack:

        async def make(history_limit: int = DEFAULT_HISTORY_EVENTS) -> EventBus:
            if url is None:
                return MemoryBus(history_limit)
            return await stack.enter_async_context(RedisBus.from_url(url, history_limit))

        yield make
