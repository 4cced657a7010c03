"""4. Time to first event: from ``POST /api/rounds`` to the first turn's start."""

from __future__ import annotations

from urllib.parse import urlencode

from bench.common import SITUATION, Report, load, pct
from bench.serving import server


def first_event(report: Report, n: int = 100, at_once: int = 10) -> None:
    body = urlencode({"situation": SITUATION})
    with server() as srv:
        url = srv.url("/api/rounds")
        load(
            url,
            "--method",
            "POST",
            "--body",
            body,
            "--until",
            "agent_processing_started",
            "--stop-after",
        )  # warm
        result = load(
            url,
            "--clients",
            n,
            "--concurrency",
            at_once,
            "--method",
            "POST",
            "--body",
            body,
            "--watch-event",
            "agent_processing_started",
            "--until",
            "agent_processing_started",
            "--stop-after",
        )
    firsts = [1000 * s for s in result["first_event_s"]]
    report.figures["first_event_p99_ms"] = pct(firsts, 99)
    report.table(
        f"4. Time to first event: POST /api/rounds to agent_processing_started, {n} requests, "
        f"{at_once} at a time",
        ["requests", "p50 ms", "p99 ms", "max ms", "errors"],
        [[len(firsts), pct(firsts, 50), pct(firsts, 99), max(firsts), result["errors"]]],
        "Each round is stopped once its first turn has started, so rounds do not pile up.",
    )
