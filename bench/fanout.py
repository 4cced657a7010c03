"""2. Fan-out: one round at 50 tokens/s watched by many clients."""

from __future__ import annotations

import time

from bench.common import SITUATION, Crowd, PeakRss, Report, cpu_seconds, pct, request
from bench.serving import server, session_with_history, wait_idle


def fanout(report: Report, sizes: tuple[int, ...] = (100, 500, 1000)) -> None:
    rows = []
    with server(PSYCHE_OFFLINE_TPS="50") as srv:
        sid, last = session_with_history(srv)
        for n in sizes:
            url = srv.url(f"/api/sessions/{sid}/events?after={last}")
            crowd = Crowd(url, n, "--until", "round_complete", "--duration", 300)
            cpu0, t0 = cpu_seconds(srv.pid), time.perf_counter()
            with PeakRss(srv.pid) as rss:
                request(
                    srv.port, "POST", "/api/rounds", {"situation": SITUATION, "session_id": sid}
                )
                results = crowd.results()
            elapsed = time.perf_counter() - t0
            cpu = cpu_seconds(srv.pid) - cpu0
            last = wait_idle(srv, sid)
            delays = [d for r in results for d in r["delays_ms"]]
            errors = sum(r["errors"] for r in results)
            report.figures[f"fanout_{n}_p99_ms"] = pct(delays, 99)
            clients_cpu = sum(r["cpu_s"] for r in results)
            per_client = sum(r["events"] for r in results) / max(crowd.connected, 1) / elapsed
            rows.append(
                [
                    n,
                    crowd.connected,
                    pct(delays, 50),
                    pct(delays, 99),
                    max(delays),
                    per_client,
                    elapsed,
                    f"{100 * cpu / elapsed:.0f}%",
                    rss.peak_kb / 1024,
                    f"{100 * clients_cpu / elapsed:.0f}%",
                    errors,
                ]
            )
    report.table(
        "2. Fan-out: one round at 50 tokens/s, watched by N clients in 4 processes",
        [
            "clients",
            "connected",
            "p50 ms",
            "p99 ms",
            "max ms",
            "messages/s a client",
            "round s",
            "server CPU",
            "peak RSS MB",
            "clients' CPU",
            "errors",
        ],
        rows,
        "Delay: a message's arrival minus its payload's timestamp (set when the event is "
        "published; a merged message carries its newest delta's, and its oldest delta waited "
        "up to one message interval more). CPU: of one core, over the round.",
    )
