"""Generation apart from delivery: how long one round takes to generate, unwatched and then
watched by many viewers, when one process does both, and when a delivering worker serves the
viewers and hands the round to a generating one (``PSYCHE_ROLE``, over Redis).

    .venv/bin/python -m bench.roles [VIEWERS] [TPS]

Prints one line per topology: the round's ``duration_ms`` unwatched, watched, and their
ratio. Needs ``redis-server`` (``make system-packages``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.web.sse import follow_round, start_round
from tests.workers import workers

from bench.common import Crowd

SITUATION = "My co-founder wants to sell the company and I do not"


def round_ms(url: str, viewer: str, session_id: str | None = None) -> tuple[str, int, int]:
    """Run one round (started at ``url``, read at ``viewer``): its session, its
    ``duration_ms`` and its last event id."""
    import httpx

    with (
        httpx.Client(base_url=url, timeout=120) as start,
        httpx.Client(base_url=viewer, timeout=120) as read,
    ):
        fields = {"session_id": session_id} if session_id else {}
        before = 0
        if session_id:
            stored = read.get(f"/api/sessions/{session_id}").json()
            before = int(stored["events_url"].split("=")[-1])
        body = start_round(start, SITUATION, **fields)
        sid = str(body["session_id"])
        msgs = follow_round(read, f"/api/sessions/{sid}/events?after={before}")
        complete = next(m for m in msgs if m.type == "round_complete")
        return sid, int(complete.data["duration_ms"]), msgs[-1].id


def measure(roles: list[str], viewers: int, tps: str) -> tuple[int, int]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        workers(
            Path(tmp), len(roles), roles=roles, offline_tps=tps, max_connections="8192"
        ) as cluster,
    ):
        front = cluster[0].url
        round_ms(front, front)  # the first round also waits for LiteLLM's import
        sid, alone, last = round_ms(front, front)
        crowd = Crowd(
            f"{front}/api/sessions/{sid}/events?after={last}",
            viewers,
            "--until",
            "conversation_state",
            "--duration",
            "300",
        )
        _, watched, _ = round_ms(front, front, sid)
        crowd.results()
        return alone, watched


def main() -> None:
    viewers = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    tps = sys.argv[2] if len(sys.argv) > 2 else "200"
    for name, roles in (
        ("one worker, both roles", ["both"]),
        ("deliver + generate", ["deliver", "generate"]),
    ):
        alone, watched = measure(roles, viewers, tps)
        print(
            f"{name}: {viewers} viewers, offline model at {tps} tokens/s: generation "
            f"{alone} ms unwatched, {watched} ms watched, ratio {watched / alone:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
