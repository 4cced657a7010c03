"""A requests-per-minute limit per model.

Each model has its own limiter, so agents on different models never wait for each other,
and waiting happens outside any shared lock.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter


class ModelRateLimiter:
    def __init__(self, requests_per_minute: float, per_model: dict[str, float] | None = None):
        self._default = requests_per_minute
        self._per_model = dict(per_model or {})
        self._limiters: dict[str, AsyncLimiter] = {}

    def rate_for(self, model: str) -> float:
        return self._per_model.get(model, self._default)

    async def acquire(self, model: str) -> None:
        rate = self.rate_for(model)
        if rate <= 0:
            return
        limiter = self._limiters.get(model)
        if limiter is None:
            # A bucket of one request refilled at the rate: no initial burst beyond one.
            limiter = self._limiters[model] = AsyncLimiter(1, 60.0 / rate)
        await limiter.acquire()
