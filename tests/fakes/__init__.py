"""Fake LLM providers for the tests: real HTTP servers on 127.0.0.1 speaking real wire formats."""

from .netguard import Connections, guard_network
from .server import DEFAULT_REPLY, Behaviour, FakeProvider, Recorded

__all__ = [
    "DEFAULT_REPLY",
    "Behaviour",
    "Connections",
    "FakeProvider",
    "Recorded",
    "guard_network",
]
