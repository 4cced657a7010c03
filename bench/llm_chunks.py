"""LiteLLM on its own: the CPU of a streamed turn through our client (``LLMClient``, our
LiteLLM settings, the offline provider), split into a part per turn and a part per chunk.

In process, no server: ``TURNS`` turns at once for each chunk size (words per chunk); the
process's CPU (every thread: LiteLLM builds the whole response in a worker thread at the
end of a stream) per turn, fitted as ``per turn + chunks x per chunk``.

    python -m bench llm
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from bench.common import SITUATION, Report

TURNS = 40
MESSAGES = [
    {"role": "system", "content": "You are the Shadow, one archetype of a council."},
    {"role": "user", "content": SITUATION},
]


async def _turns(tps: float) -> tuple[float, int, int]:
    """(CPU seconds, chunks, words) of ``TURNS`` concurrent turns at this pace."""
    from psyche_sse.config import Settings
    from psyche_sse.llm import _litellm
    from psyche_sse.llm.client import CompletionRequest, LLMClient

    await _litellm.load()
    client = LLMClient(Settings(offline_tps=tps, rate_limit_rpm=0))
    counts = [0, 0]

    async def turn(seed: int) -> None:
        request = CompletionRequest("psyche/offline", MESSAGES, 0.7, 400, seed=seed)
        async with client.stream(request) as reply:
            async for text in reply:
                counts[0] += 1
                counts[1] += len(text.split())

    async def batch(offset: int) -> None:
        async with anyio.create_task_group() as tg:
            for i in range(TURNS):
                tg.start_soon(turn, offset + i)

    await batch(10_000)  # warm
    counts[:] = [0, 0]
    cpu = time.process_time()
    await batch(0)
    return time.process_time() - cpu, counts[0], counts[1]


def llm_chunks(report: Report) -> None:
    rows: list[list[Any]] = []
    points: list[tuple[float, float]] = []
    for label, tps in (("1 (as fast as possible)", 0.0), ("5 (50/s, 0.1 s tick)", 50.0)):
        cpu, chunks, words = anyio.run(_turns, tps)
        per_turn = cpu / TURNS
        points.append((chunks / TURNS, per_turn))
        rows.append([label, chunks / TURNS, 1e6 * per_turn, 1e6 * cpu / max(1, words)])
    (c1, t1), (c2, t2) = points
    per_chunk = (t1 - t2) / (c1 - c2) if c1 != c2 else float("nan")
    fixed = t1 - c1 * per_chunk
    report.figures["llm_us_per_chunk"] = 1e6 * per_chunk
    report.figures["llm_us_per_turn"] = 1e6 * fixed
    report.table(
        f"7. LiteLLM on its own: {TURNS} concurrent offline turns through our client",
        ["words per chunk", "chunks per turn", "µs CPU per turn", "µs CPU per word"],
        rows,
        f"Fitted: {1e6 * fixed:,.0f} µs per turn + {1e6 * per_chunk:,.0f} µs per chunk "
        "(the client's and LiteLLM's work with the offline provider; no server, no store).",
    )
