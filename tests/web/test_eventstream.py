"""The SSE response on the wire: heartbeats, a quick stop with streams open, headers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.live import start_server, stop_server
from tests.web.seed import seed


@pytest.mark.slow
def test_a_quiet_stream_gets_heartbeats_and_the_server_stops_at_once(tmp_path: Path) -> None:
    # A finished session written beforehand: no round to run, the stream is quiet at once.
    (session,) = seed(tmp_path / "psyche.db", 1)
    server = start_server(tmp_path, offline_tps="0", heartbeat="0.2")
    try:
        with server.client() as client:
            sid = session.id
            last = client.get(f"/api/sessions/{sid}").json()["last_event_id"]
            with client.stream("GET", f"/api/sessions/{sid}/events?after={last}") as response:
                assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
                assert response.headers["cache-control"] == "no-cache, no-transform"
                assert response.headers["x-accel-buffering"] == "no"
                lines = response.iter_lines()
                assert next(lines).startswith("retry: ")
                beats = 0
                for line in lines:
                    if line == ": heartbeat":
                        beats += 1
                        if beats == 2:
                            break
                # With the stream open, the server stops without waiting out its grace period.
                began = time.monotonic()
                server.process.terminate()
                rest = list(lines)  # the stream ends, cleanly
                # uvicorn re-raises the signal once it has shut down cleanly.
                assert server.process.wait(timeout=10) in (0, -15)
                took = time.monotonic() - began
    finally:
        stop_server(server)
    assert beats == 2
    assert all(line in ("", ": heartbeat") for line in rest)
    assert took < 3, f"the server took {took:.1f} s to stop with a stream open"
