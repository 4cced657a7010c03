from __future__ import annotations

import time

import anyio
import pytest

from psyche_sse.llm.ratelimit import ModelRateLimiter

pytestmark = pytest.mark.anyio


async def test_a_limited_model_waits_and_others_do_not() -> None:
    limiter = ModelRateLimiter(0, per_model={"slow/model": 600})  # one request per 0.1 s
    granted: list[float] = []
    start = time.perf_counter()

    async def use_slow() -> None:
        for _ in range(3):
            await limiter.acquire("slow/model")
            granted.append(time.perf_counter() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(use_slow)
        await anyio.wait_all_tasks_blocked()  # the slow model is now waiting for its bucket
        with anyio.fail_after(0.05):  # another model is not held up by that wait
            for _ in range(20):
                await limiter.acquire("free/model")
    assert len(granted) == 3
    assert granted[2] - granted[0] >= 0.15  # the limited model was spaced out
    assert limiter.rate_for("free/model") == 0


async def test_acquire_says_how_long_it_waited() -> None:
    limiter = ModelRateLimiter(120)  # one request per 0.5 s
    assert await limiter.acquire("m") is None  # the bucket's one request: no wait
    waited = await limiter.acquire("m")
    assert waited is not None and waited > 0
    assert await ModelRateLimiter(0).acquire("m") is None  # no limit
