"""Shared fixtures: anyio runs async tests on asyncio, the loop the service runs on; a real
PostgreSQL server (one per test process) with a fresh database per test that asks for one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import postgres


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
