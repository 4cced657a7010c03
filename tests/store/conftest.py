"""Fixtures for the store tests: a database of the test's own, on each backend in turn.

Every test that takes ``db`` (or ``settings``) runs twice: on a SQLite file, and on a fresh
PostgreSQL database of the test server (see tests/postgres.py). A test of what only SQLite
has says so with :data:`tests.databases.sqlite_only`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.databases import BACKENDS, Database, settings_for

from psyche_sse.config import Settings


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Database:
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return tmp_path / "var" / "psyche.db"


@pytest.fixture
def settings(db: Database) -> Settings:
    return settings_for(db, offline_tps=0)
