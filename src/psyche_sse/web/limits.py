"""Limits per signed-in user: runs started in any minute, and rounds running at once.

The local user of a server with no accounts is bound only by the server's cap on running
rounds (``max_running_rounds``), which applies to everyone.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from ..config import Settings
from .auth import User
from .errors import HTTPError

MINUTE = 60.0
# What a client over a cap on running rounds (the user's or the server's) is told to wait,
# in seconds.
RETRY_AFTER_SECONDS = 5


class RoundLimits:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = settings.user_rounds_per_minute
        self.at_once = settings.user_running_rounds
        self.clock = clock
        self._starts: dict[int, deque[float]] = {}

    def check(self, user: User, running: int) -> None:
        """A 429 when ``user`` (running ``running`` rounds now) may not start another."""
        if user.id is None:
            return
        if self.at_once and running >= self.at_once:
            raise HTTPError(
                429,
                f"you have {running} rounds running, the most you may run at once; wait for "
                "one to end or stop it",
                code="too_many_rounds",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        if self.per_minute:
            now = self.clock()
            starts = self._starts.get(user.id)
            while starts and now - starts[0] >= MINUTE:
                starts.popleft()
            if starts and len(starts) >= self.per_minute:
                wait = max(1, math.ceil(starts[0] + MINUTE - now))
                raise HTTPError(
                    429,
                    f"you started {len(starts)} rounds in the last minute, the most you may; "
                    f"try again in {wait} seconds",
                    code="too_many_rounds",
                    headers={"Retry-After": str(wait)},
                )

    def started(self, user: User) -> None:
        if user.id is None or not self.per_minute:
            return
        starts = self._starts.setdefault(user.id, deque(maxlen=self.per_minute))
        starts.append(self.clock())
