"""7. Memory: many rounds in new sessions, then a minute idle."""

from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import urlencode

from bench.common import SITUATION, Report, request, rss_kb
from bench.serving import server


def _run_rounds(port: int, count: int, workers: int = 4) -> int:
    """``count`` rounds, each in a new session, ``workers`` at a time, each stream read to its
    end (the round's ``round_complete``); how many did not end so."""
    body = urlencode({"situation": SITUATION}).encode()
    todo = list(range(count))
    lock = threading.Lock()
    failed = 0

    def worker() -> None:
        nonlocal failed
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request(
                    "POST",
                    "/api/rounds",
                    body,
                    {"Content-Type": "application/x-www-form-urlencoded"},
                )
                response = conn.getresponse()
                tail = b""
                while chunk := response.read(65536):
                    tail = (tail + chunk)[-4096:]
                ok = response.status == 200 and b"event: round_complete" in tail
            except OSError:
                ok = False
            finally:
                conn.close()
            if not ok:
                with lock:
                    failed += 1

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failed


def memory(report: Report, rounds: int = 2000, first: int = 50, idle_s: float = 60) -> None:
    with server(PSYCHE_OFFLINE_TPS="0") as srv:
        started = time.perf_counter()
        failed = _run_rounds(srv.port, first)
        after_first = rss_kb(srv.pid)
        failed += _run_rounds(srv.port, rounds - first)
        after_all = rss_kb(srv.pid)
        took = time.perf_counter() - started
        in_memory = request(srv.port, "GET", "/healthz")[1]["sessions"]
        time.sleep(idle_s)  # the measurement itself: what a minute with nothing to do leaves
        after_idle = rss_kb(srv.pid)
        left = request(srv.port, "GET", "/healthz")[1]["sessions"]
    growth = (after_idle - after_first) / 1024
    report.figures["memory_growth_mb"] = growth
    report.table(
        f"7. Memory: {rounds} rounds in new sessions (offline model, full speed), then "
        f"{idle_s:.0f} s idle",
        ["moment", "RSS MB", "sessions in memory"],
        [
            [f"after the first {first} rounds", after_first / 1024, "—"],
            [f"after {rounds} rounds ({took:.0f} s, {failed} failed)", after_all / 1024, in_memory],
            [f"after {idle_s:.0f} s idle", after_idle / 1024, left],
            ["growth since the first rounds, MB (target ≤ 60)", growth, ""],
        ],
        "A session with nothing running and no viewer leaves memory after PSYCHE_SESSION_IDLE "
        "(10 s); it lives on in the database.",
    )
