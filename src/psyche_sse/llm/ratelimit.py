"""A requests-per-minute limit per model.

Each model has its own limiter, so agents on different models never wait for each other,
and waiting happens outside any shared lock.
"""

from __future__ import annotations

import time

from aiolimiter import AsyncLimiter


class ModelRateLimiter:
    def __init__(self, requests_per_minute: float, per_model: dict[str, float] | None = None):
        self._default = requests_per_minute
        self._per_model = dict(per_model or {})
        self._limiters: dict[str, AsyncLimiter] = {}

    def rate_for(self, model: str) -> float:
        return self._per_model.get(model, self._default)

    async def acquire(self, model: str) -> float | None:
        """Wait until the model may be called: the seconds waited, None when it had not to."""
        rate = self.rate_for(model)
        if rate <= 0:
            return None
        limiter = self._limiters.get(model)
        if limiter is None:
            # A bucket of one request refilled at the rate: no initial burst beyond one.
            limiter = self._limiters[model] = AsyncLimiter(1, 60.0 / rate)
        if limiter.has_capacity():
            await limiter.acquire()
            return None
        started = time.perf_counter()
        await limiter.acquire()
        return time.perf_counter() - started
