"""5. Idle cost: the memory of connected SSE clients that receive nothing."""

from __future__ import annotations

from bench.common import Crowd, Report, request, rss_kb
from bench.serving import server, session_with_history


def idle(report: Report, n: int = 2000) -> None:
    rows = []
    for kind in ("baseline", "psyche"):
        with server(kind) as srv:
            if kind == "psyche":
                sid, last = session_with_history(srv)
                url = srv.url(f"/api/sessions/{sid}/events?after={last}")
                name = "psyche-sse, a quiet session's raw stream"
            else:
                url, name = srv.url("/idle"), "bare sse-starlette, a stream that waits"
            Crowd(url, 20, "--hold", "--duration", 600).results()  # warm
            before = rss_kb(srv.pid)
            crowd = Crowd(url, n, "--hold", "--duration", 600)
            after = rss_kb(srv.pid)
            ok = request(srv.port, "GET", "/healthz")[0] == 200
            crowd.results()
        per = (after - before) / max(crowd.connected, 1)
        report.figures[f"idle_kb_per_client_{kind}"] = per
        rows.append(
            [name, crowd.connected, before / 1024, after / 1024, per, "200" if ok else "failed"]
        )
    report.table(
        f"5. Idle cost: {n} connected SSE clients",
        [
            "server",
            "clients connected",
            "RSS before MB",
            "RSS after MB",
            "KB per client",
            "healthz with them",
        ],
        rows,
    )
