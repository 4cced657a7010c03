"""6. The hot path: the server's CPU per streamed token against bare sse-starlette's CPU per
event, and where the server's CPU goes.

20 concurrent offline rounds at 50 tokens/s, one viewer each (the client that starts the
round follows it). The server's own CPU (``/proc/PID/stat``) is read before and after; the
tokens are the turns' usage (``completion_tokens``), read back from the API. The floor is
bare sse-starlette (``bench.baseline``) sending as many update-sized events to 20 clients.
A py-spy sampling profile of the server during the rounds gives the split by component.

    python -m bench hotpath          # this measurement alone
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import PY, SITUATION, Report, cpu_seconds, load, load_rounds, request
from bench.serving import Server, server
from bench.throughput import capture_round

ROUNDS = 20
REPS = 3  # batches of ROUNDS rounds measured; the median counts
FLOOR_SCALE = 5  # the floor sends this many times as many events: its CPU reads finer
TPS = "50"

# Where a profile sample's innermost recognised frame lies (checked in this order).
_PARTS = (
    ("LiteLLM", ("/litellm/", "/openai/")),
    (
        "HTTP (uvicorn, httptools, starlette)",
        ("/uvicorn/", "/httptools/", "/starlette/", "/sse_starlette/", "/h11/"),
    ),
    ("event loop (asyncio, uvloop, anyio)", ("/asyncio/", "/uvloop/", "/anyio/", "selectors.py")),
)

# Leaf frames of a thread blocked waiting (no CPU), left out of the split. The loop's
# ``Runner.run`` as the innermost frame is uvloop's C code with no Python frame under it:
# mostly waiting in ``epoll_wait``, or woken and waiting for a CPU (a native profile,
# ``py-spy record --native``, finds ``epoll_pwait`` in about three quarters of it). Counted,
# they made the samples exceed the CPU the process used (8.65 s of samples for 7.4 s of CPU;
# 6.0 s without them): they were most of what looked like the event loop's share.
_WAITING = ("Condition.wait (", "_worker (/", "Queue.get (", "Runner.run (")


def _load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _sessions(srv: Server) -> set[str]:
    _, body = request(srv.port, "GET", "/api/sessions?limit=100")
    rows = body["sessions"]
    return {str(r["id"]) for r in rows}


def _completion_tokens(value: Any) -> int:
    """The sum of every ``usage.completion_tokens`` in a session's JSON."""
    if isinstance(value, dict):
        total = 0
        usage = value.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            total += usage["completion_tokens"]
        return total + sum(_completion_tokens(v) for k, v in value.items() if k != "usage")
    if isinstance(value, list):
        return sum(_completion_tokens(v) for v in value)
    return 0


def _spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    exe = Path(PY).parent / "py-spy"
    if not exe.exists():
        return None
    cmd = [str(exe), "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
    cmd += ["--rate", "200", "--nonblocking", "--full-filenames", "--duration", "600"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_split(path: Path) -> Counter[str]:
    """Samples by component: the innermost frame that is ours (by module), LiteLLM's, the
    HTTP stack's or the event loop's names the part; a sample with none is "other"."""
    parts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if any(w in frames[-1] for w in _WAITING):
            continue  # a worker thread waiting for work: py-spy may take it for active
        parts[_part(frames)] += int(count)
    return parts


def _part(frames: list[str]) -> str:
    for frame in reversed(frames):
        at = frame.find("psyche_sse/")
        if at >= 0:
            module = frame[at:].split(":", 1)[0].removesuffix(".py").removesuffix(")")
            return "ours: " + module.replace("/", ".")
        for name, needles in _PARTS:
            if any(n in frame for n in needles):
                return name
    return "other (threads idle, stdlib)"


def _psyche(report: Report) -> dict[str, Any]:
    body = urlencode({"situation": SITUATION})
    with server(PSYCHE_OFFLINE_TPS=TPS) as srv:
        url = srv.url("/api/rounds")
        load(url, "--method", "POST", "--body", body, "--until", "round_complete")  # warm
        before = _sessions(srv)
        tmp = Path(tempfile.mkdtemp(prefix="psyche-bench-"))
        profile = tmp / "profile.txt"
        spy = _spy(srv.pid, profile)
        load_avg = _load_avg()
        runs = []
        for _ in range(REPS):
            cpu0 = cpu_seconds(srv.pid)
            result = load_rounds(url, ROUNDS, body)
            runs.append((cpu_seconds(srv.pid) - cpu0, result))
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        tokens = sum(
            _completion_tokens(request(srv.port, "GET", f"/api/sessions/{sid}")[1])
            for sid in _sessions(srv) - before
        )
        split = profile_split(profile) if profile.exists() else Counter()
        keep = os.environ.get("BENCH_HOTPATH_PROFILE")  # where to keep the raw profile
        if keep and profile.exists():
            shutil.copyfile(profile, keep)
        shutil.rmtree(tmp, ignore_errors=True)
    # The rounds are alike (same situation, same offline model): each run has a third of the
    # tokens; the median run's CPU stands for them.
    tokens //= REPS
    cpu, result = sorted(runs, key=lambda r: r[0])[REPS // 2]
    spread = f"{1e6 * runs_min(runs) / tokens:.0f}-{1e6 * runs_max(runs) / tokens:.0f}"
    return {
        "cpu_s": cpu,
        "tokens": tokens,
        "messages": result["events"],
        "errors": result["errors"],
        "elapsed_s": result["elapsed_s"],
        "split": split,
        "load": load_avg,
        "spread": spread,
    }


def runs_min(runs: list[tuple[float, Any]]) -> float:
    return min(r[0] for r in runs)


def runs_max(runs: list[tuple[float, Any]]) -> float:
    return max(r[0] for r in runs)


def _baseline(tokens: int) -> dict[str, Any]:
    """Bare sse-starlette sending ``tokens`` update-sized events in all to 20 clients (times
    ``FLOOR_SCALE``, so that its CPU, counted in clock ticks, is read to a few per cent)."""
    events = [e for e in capture_round(7) if e["type"] == "agent_processing_update"]
    per_client = -(-tokens * FLOOR_SCALE // ROUNDS)
    tmp = Path(tempfile.mkdtemp(prefix="psyche-bench-"))
    path = tmp / "updates.jsonl"
    with path.open("w") as fh:
        for i in range(per_client):
            e = events[i % len(events)]
            data = {k: v for k, v in e.items() if k != "id"}
            fh.write(json.dumps({"event": e["type"], "data": json.dumps(data)}) + "\n")
    try:
        with server("baseline", BENCH_EVENTS=str(path)) as srv:
            load(srv.url("/stream"), "--until-id", per_client)  # warm
            load_avg = _load_avg()
            cpu0 = cpu_seconds(srv.pid)
            result = load(srv.url("/stream"), "--clients", ROUNDS, "--until-id", per_client)
            cpu = cpu_seconds(srv.pid) - cpu0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"cpu_s": cpu, "events": result["events"], "load": load_avg}


def hotpath(report: Report) -> None:
    ours = _psyche(report)
    tokens = max(1, ours["tokens"])
    floor = _baseline(tokens)
    us_token = 1e6 * ours["cpu_s"] / tokens
    us_event = 1e6 * floor["cpu_s"] / max(1, floor["events"])
    ratio = us_token / us_event if us_event else float("nan")
    report.figures["hotpath_us_token"] = us_token
    report.figures["hotpath_us_event"] = us_event
    report.figures["hotpath_ratio"] = ratio
    report.table(
        f"6. The hot path: {ROUNDS} concurrent offline rounds at {TPS} tokens/s, one viewer each",
        ["server", "CPU s", "tokens / events", "messages", "µs CPU each", "ratio", "load avg"],
        [
            [
                "psyche-sse (per token)",
                ours["cpu_s"],
                ours["tokens"],
                ours["messages"],
                us_token,
                f"{ratio:.1f}",
                ours["load"],
            ],
            [
                "bare sse-starlette (per event)",
                floor["cpu_s"],
                floor["events"],
                floor["events"],
                us_event,
                "1",
                floor["load"],
            ],
        ],
        f"ratio = psyche-sse's µs per token / sse-starlette's µs per event; the median of "
        f"{REPS} batches of rounds (their range: {ours['spread']} µs per token); "
        f"{ours['errors']} client errors; a batch of rounds took {ours['elapsed_s']:.1f} s; "
        "the clients run in processes of their own.",
    )
    split: Counter[str] = ours["split"]
    total = sum(split.values())
    if total:
        groups: Counter[str] = Counter()
        for part, k in split.items():
            groups["ours (psyche_sse)" if part.startswith("ours: ") else part] += k
        report.figures["hotpath_split"] = {p: k / total for p, k in groups.items()}
        rows = [
            [p, f"{100 * k / total:.0f}%", us_token * k / total] for p, k in groups.most_common()
        ]
        rows += [
            [f"&nbsp;&nbsp;{part}", f"{100 * k / total:.1f}%", us_token * k / total]
            for part, k in split.most_common()
            if part.startswith("ours: ") and k / total >= 0.005
        ]
        report.table(
            "6b. Where the server's CPU goes during the rounds (py-spy, innermost known frame)",
            ["part", "share", "µs/token"],
            rows,
            "A sample belongs to the innermost frame that is ours (by module), LiteLLM's "
            "(litellm, openai), the HTTP stack's or the event loop's (asyncio, uvloop, anyio); "
            "what those call (json, pydantic, the stdlib) counts for them. Our modules under "
            "half a per cent are left out of the detail.",
        )
