"""6. Start-up: from process start to serving, and ``psyche-sse --help``."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from tests.live import environ

from bench.common import PY, Report
from bench.serving import server


def startup(report: Report, reps: int = 3) -> None:
    ours, ready = [], []
    for _ in range(reps):
        with server() as srv:
            ours.append(srv.startup_s)
            ready.append(srv.ready_s)
    floor = []
    for _ in range(reps):
        with server("baseline") as srv:
            floor.append(srv.startup_s)
    helps = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(
            [str(Path(PY).parent / "psyche-sse"), "--help"],
            env=environ(),
            capture_output=True,
            check=True,
        )
        helps.append(time.perf_counter() - t0)
    report.figures["startup_s"] = statistics.median(ours)
    report.table(
        f"6. Start-up (median of {reps}; --help of 5)",
        ["what", "seconds"],
        [
            ["psyche-sse serve: process start to first 200 from /healthz", statistics.median(ours)],
            [
                "psyche-sse serve: process start to LiteLLM loaded (healthz says llm: ready)",
                statistics.median(ready),
            ],
            ["bare sse-starlette under uvicorn, the same", statistics.median(floor)],
            ["psyche-sse --help", statistics.median(helps)],
        ],
    )
