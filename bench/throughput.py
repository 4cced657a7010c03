"""1. Delivery throughput: one unthrottled offline round through psyche-sse, live and
replayed, against bare sse-starlette sending the same events pre-encoded."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.live import environ

from bench.common import PY, SITUATION, Report, load, request
from bench.serving import server, wait_idle


def capture_round(seed: int) -> list[dict[str, Any]]:
    """One unthrottled offline round's events, as the CLI prints them (one per line)."""
    done = subprocess.run(
        [PY, "-m", "psyche_sse", "run", "--json", "--seed", str(seed), SITUATION],
        env=environ(PSYCHE_OFFLINE_TPS="0", PSYCHE_DB=":memory:"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def _baseline_files(events: list[dict[str, Any]], tmp: Path) -> tuple[Path, Path]:
    from psyche_sse.config import load_settings
    from psyche_sse.events import Event, parse
    from psyche_sse.web.render import Renderer

    renderer = Renderer(load_settings())
    raw, html = tmp / "raw.jsonl", tmp / "html.jsonl"
    with raw.open("w") as fr, html.open("w") as fh:
        for line in events:
            data = {k: v for k, v in line.items() if k != "id"}
            event = Event(line["id"], parse(data))
            fr.write(json.dumps({"event": line["type"], "data": event.json()}) + "\n")
            fh.write(json.dumps({"event": None, "data": str(renderer.event_html(event))}) + "\n")
    return raw, html


def throughput(report: Report, reps: int = 5) -> None:
    seed = 7
    events = capture_round(seed)
    last = events[-1]["id"]
    kinds = Counter(e["type"] for e in events)
    report.figures["non_delta_events"] = len(events) - kinds["agent_processing_update"]
    tmp = Path(tempfile.mkdtemp(prefix="psyche-bench-"))
    raw_file, html_file = _baseline_files(events, tmp)
    body = urlencode({"situation": SITUATION, "seed": seed})
    rows = []
    figures: dict[str, dict[str, float]] = {}
    try:
        for name, path in (("raw", raw_file), ("html", html_file)):
            with server("baseline", BENCH_EVENTS=str(path)) as srv:
                runs = [load(srv.url("/stream"), "--until-id", last) for _ in range(reps + 1)][1:]
            figures[f"baseline_{name}"] = _rates(runs)
        with server(PSYCHE_OFFLINE_TPS="0") as srv:
            stream = srv.url("/api/rounds")
            runs = [
                load(stream, "--method", "POST", "--body", body, "--until", "round_complete")
                for _ in range(reps + 1)
            ][1:]
            figures["psyche_raw"] = _rates(runs)
            page = srv.url("/s/{session_id}/stream")
            runs = [load(page, "--start", body, "--until-id", last) for _ in range(reps + 1)][1:]
            figures["psyche_html"] = _rates(runs)
            # The delivery path alone: the finished round replayed from the server's log.
            _, started = request(
                srv.port, "POST", "/api/rounds", {"situation": SITUATION, "seed": seed}
            )
            sid = started["session_id"]
            done = wait_idle(srv, sid)
            for name, path in (
                ("raw", f"/api/sessions/{sid}/events?after=0"),
                ("html", f"/s/{sid}/stream?after=0"),
            ):
                runs = [load(srv.url(path), "--until-id", done) for _ in range(reps + 1)][1:]
                figures[f"replay_{name}"] = _rates(runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name in ("raw", "html"):
        ours, floor = figures[f"psyche_{name}"], figures[f"baseline_{name}"]
        ratio = ours["events_s"] / floor["events_s"]
        report.figures[f"throughput_{name}_ratio"] = ratio
        rows.append(
            [
                f"bare sse-starlette, {name}",
                floor["events_s"],
                floor["messages_s"],
                floor["mb_s"],
                floor["elapsed_ms"],
                "",
            ]
        )
        rows.append(
            [
                f"psyche-sse, {name}, live round",
                ours["events_s"],
                ours["messages_s"],
                ours["mb_s"],
                ours["elapsed_ms"],
                f"{ratio:.2f}",
            ]
        )
        replay = figures[f"replay_{name}"]
        report.figures[f"replay_{name}_ratio"] = replay["events_s"] / floor["events_s"]
        rows.append(
            [
                f"psyche-sse, {name}, the finished round replayed",
                replay["events_s"],
                replay["messages_s"],
                replay["mb_s"],
                replay["elapsed_ms"],
                f"{replay['events_s'] / floor['events_s']:.2f}",
            ]
        )
    report.table(
        f"1. Delivery throughput: one unthrottled offline round ({last} events, median of {reps})",
        ["server, stream", "events/s", "messages/s", "MB/s", "round ms", "ratio"],
        rows,
        "events/s counts the round's events delivered (a merged message carries several "
        "deltas); the bare server sends each event as its own message, pre-encoded. A live "
        "round includes generating it through LiteLLM; a replay is the delivery path alone "
        "(log, merging, encoding, the response), where a turn's deltas go as one message.",
    )


def _rates(runs: list[dict[str, Any]]) -> dict[str, float]:
    def med(f: Any) -> float:
        return statistics.median(f(r) for r in runs)

    return {
        "events_s": med(lambda r: r["last_id"] / r["elapsed_s"]),
        "messages_s": med(lambda r: r["events"] / r["elapsed_s"]),
        "mb_s": med(lambda r: r["bytes"] / r["elapsed_s"] / 1e6),
        "elapsed_ms": med(lambda r: r["elapsed_s"] * 1000),
    }
