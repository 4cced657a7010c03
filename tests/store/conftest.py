"""Fixtures for the store tests: a database file of the test's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from psyche_sse.config import Settings


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "var" / "psyche.db"


@pytest.fixture
def settings(db: Path) -> Settings:
    return Settings(offline_tps=0, db=db)
