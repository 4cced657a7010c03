"""Fixtures for the provider tests: one fake provider server for the session, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from psyche_sse.llm import preload
from tests.fakes import Connections, FakeProvider, guard_network


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeProvider]:
    # LiteLLM imported before the first turn, as the app does at start-up: its import (seconds
    # on a busy machine) would otherwise count against that turn's deadline.
    preload()
    with FakeProvider().running() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    """The fake provider, answering normally, with nothing recorded yet."""
    fake_server.reset()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    for key in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OLLAMA_API_BASE"):
        monkeypatch.delenv(key, raising=False)
    return fake_server


@pytest.fixture
def network(fake: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[Connections]:
    """Every connection the test makes; at the end, none may have gone past the fake."""
    seen = guard_network(monkeypatch)
    yield seen
    stray = seen.elsewhere(("127.0.0.1", fake.port))
    assert not stray, f"connections other than the fake provider: {stray}"
