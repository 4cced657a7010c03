"""Waiting on a condition, never on the clock: for what a test cannot be told of."""

from __future__ import annotations

import threading
from collections.abc import Callable


def wait_for(condition: Callable[[], object], timeout: float = 20.0) -> None:
    """Return once ``condition()`` is true; AssertionError after ``timeout`` seconds."""
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not condition():
            assert not done.is_set(), "timed out"
            done.wait(0.05)
    finally:
        deadline.cancel()
