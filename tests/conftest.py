"""Shared fixtures: anyio runs async tests on asyncio, the loop the service runs on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
