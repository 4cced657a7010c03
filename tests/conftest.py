"""Shared fixtures: anyio runs async tests on asyncio, the loop the service runs on."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's own PSYCHE_* variables."""
    for key in list(os.environ):
        if key.startswith("PSYCHE_"):
            monkeypatch.delenv(key)
