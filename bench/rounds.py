"""3. Many rounds: concurrent rounds at 50 tokens/s, and where the server's CPU goes."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

from bench.common import PY, SITUATION, Report, cpu_seconds, load, load_rounds, pct
from bench.serving import server


def many_rounds(report: Report, n: int = 50) -> None:
    body = urlencode({"situation": SITUATION})
    have_spy = shutil.which("py-spy", path=str(Path(PY).parent)) is not None
    with server(PSYCHE_OFFLINE_TPS="50") as srv:
        load(
            srv.url("/api/rounds"), "--method", "POST", "--body", body, "--until", "round_complete"
        )  # warm
        profile = Path(tempfile.mkdtemp(prefix="psyche-bench-")) / "profile.txt"
        spy = None
        if have_spy:
            spy = subprocess.Popen(
                [
                    str(Path(PY).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(srv.pid),
                    "--format",
                    "raw",
                    "--output",
                    str(profile),
                    "--rate",
                    "250",
                    "--nonblocking",
                    "--full-filenames",
                    "--duration",
                    "600",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        cpu0 = cpu_seconds(srv.pid)
        result = load_rounds(srv.url("/api/rounds"), n, body, "--per-client")
        cpu = cpu_seconds(srv.pid) - cpu0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
    events = sum(result["last_ids"])
    deltas = events - n * report.figures.get("non_delta_events", 13)
    shares = _profile_shares(profile) if profile.exists() else {}
    shutil.rmtree(profile.parent, ignore_errors=True)
    report.figures["rounds_deltas_s"] = deltas / result["elapsed_s"]
    rows = [
        [
            n,
            deltas,
            deltas / result["elapsed_s"],
            pct(result["delays_ms"], 50),
            pct(result["delays_ms"], 99),
            1e6 * cpu / deltas,
            result["errors"],
        ]
    ]
    report.table(
        f"3. Many rounds: {n} concurrent rounds at 50 tokens/s, one viewer each",
        ["rounds", "deltas", "deltas/s", "p50 ms", "p99 ms", "server CPU µs/delta", "errors"],
        rows,
    )
    if shares:
        total = sum(shares.values())
        report.table(
            "3b. Where the server's CPU goes (py-spy samples, active threads)",
            ["part", "share", "µs/delta"],
            [
                [part, f"{100 * k / total:.0f}%", 1e6 * cpu * k / total / deltas]
                for part, k in sorted(shares.items(), key=lambda kv: -kv[1])
            ],
            "A sample counts for LiteLLM if any frame is in litellm or openai, else for "
            "psyche-sse if any frame is ours, else for the server stack (uvicorn, starlette, "
            "sse-starlette, h11), else for the event loop and the rest.",
        )


def _profile_shares(path: Path) -> dict[str, int]:
    shares: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        if "/litellm/" in stack or "/openai/" in stack:
            part = "LiteLLM (and openai types)"
        elif "psyche_sse/" in stack:
            part = "psyche-sse"
        elif any(
            s in stack
            for s in ("/uvicorn/", "/starlette/", "/sse_starlette/", "/h11/", "/httptools/")
        ):
            part = "server stack"
        else:
            part = "event loop and other"
        shares[part] += int(count)
    return dict(shares)
