"""``make bench``: the stream path measured against bare sse-starlette, in one run.

Every server runs as its own uvicorn process on a free loopback port; every load comes from
``bench.loadclient`` processes, so the figures are what a client on this machine sees. The
report is a set of Markdown tables on stdout (and in ``--out FILE``).

    python -m bench [--only throughput,fanout,rounds,first,idle,startup,memory] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
SITUATION = "I was passed over for promotion and my manager will not say why"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") / 1024
LOAD_PROCESSES = 4  # the clients of one measurement, spread over this many processes


# --- processes ------------------------------------------------------------------------------


def _environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSYCHE_")}
    # This checkout's code, whatever is installed.
    return {**env, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", **extra}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_kb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB


def _raise_fd_limit() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def request(
    port: int, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw
    finally:
        conn.close()


def wait_until(condition: Any, timeout: float, what: str, every: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(every)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    startup_s: float
    ready_s: float
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _healthy(port: int, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"the server exited with {proc.returncode}")
    try:
        return request(port, "GET", "/healthz")[0] == 200
    except OSError:
        return False


@contextlib.contextmanager
def server(kind: str = "psyche", **env: str) -> Iterator[Server]:
    """A server process on a free port, up (``/healthz`` answers 200) on entry."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="psyche-bench-"))
    log = tmp / "server.log"
    if kind == "psyche":
        cmd = [PY, "-m", "psyche_sse", "serve", "--port", str(port)]
    else:
        cmd = [PY, "-m", "uvicorn", "bench.baseline:app", "--port", str(port)]
        cmd += ["--log-level", "warning"]
    environ = _environ(PSYCHE_DB=str(tmp / "bench.db"), **env)
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            preexec_fn=_raise_fd_limit,
        )
    try:
        try:
            wait_until(lambda: _healthy(port, proc), 120, "the server to start")
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}:\n{log.read_text()[-2000:]}") from None
        up = time.perf_counter() - started
        if kind == "psyche":
            # Measure the service warm: LiteLLM imported (it loads while the app serves).
            wait_until(
                lambda: request(port, "GET", "/healthz")[1]["llm"] == "ready",
                120,
                "LiteLLM to load",
                every=0.02,
            )
        yield Server(proc, port, up, time.perf_counter() - started, log)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def load(url: str, *args: str | int | float) -> dict[str, Any]:
    """One load-client process to completion; its result."""
    cmd = [PY, "-m", "bench.loadclient", url, *map(str, args)]
    done = subprocess.run(
        cmd,
        env=_environ(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_raise_fd_limit,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load client failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


class Crowd:
    """Clients spread over several load processes, all connected on entry."""

    def __init__(self, url: str, clients: int, *args: str | int | float) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        per = [
            clients // LOAD_PROCESSES + (i < clients % LOAD_PROCESSES)
            for i in range(LOAD_PROCESSES)
        ]
        for n in filter(None, per):
            cmd = [PY, "-m", "bench.loadclient", url, "--clients", str(n), "--signal-ready"]
            cmd += ["--ramp", *map(str, args)]
            self.procs.append(
                subprocess.Popen(
                    cmd,
                    env=_environ(),
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    preexec_fn=_raise_fd_limit,
                )
            )
        self.connected = 0
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("a load client died while connecting")
            self.connected += int(json.loads(line)["ready"])

    def results(self, timeout: float = 300) -> list[dict[str, Any]]:
        out = []
        for proc in self.procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()
            text = proc.stdout.read()
            proc.wait(timeout)
            out.append(json.loads(text.strip().splitlines()[-1]))
        return out


class PeakRss:
    """The largest RSS of a process while the ``with`` block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(OSError):
                self.peak_kb = max(self.peak_kb, rss_kb(self.pid))

    def __enter__(self) -> PeakRss:
        self.peak_kb = rss_kb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- figures --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Report:
    sections: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def table(self, title: str, head: list[str], rows: list[list[Any]], note: str = "") -> None:
        lines = [f"### {title}", "", "| " + " | ".join(head) + " |"]
        lines.append("|" + "|".join("---" for _ in head) + "|")
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
        if note:
            lines += ["", note]
        text = "\n".join(lines) + "\n"
        self.sections.append(text)
        print(text, flush=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _session_with_history(srv: Server) -> tuple[str, int]:
    """A session whose first round was stopped at once: (session id, its last event id)."""
    status, body = request(srv.port, "POST", "/api/rounds", {"situation": SITUATION})
    assert status == 202, body
    sid = body["session_id"]
    request(srv.port, "POST", f"/api/sessions/{sid}/stop", {})
    return sid, _wait_idle(srv, sid)


def _wait_idle(srv: Server, sid: str) -> int:
    state: dict[str, Any] = {}

    def idle() -> bool:
        state.update(request(srv.port, "GET", f"/api/sessions/{sid}")[1])
        return not state["running"]

    wait_until(idle, 120, "the round to end", every=0.05)
    return int(state["last_event_id"])


# --- 1. delivery throughput -----------------------------------------------------------------


def capture_round(seed: int) -> list[dict[str, Any]]:
    """One unthrottled offline round's events, as the CLI prints them (one per line)."""
    done = subprocess.run(
        [PY, "-m", "psyche_sse", "run", "--json", "--seed", str(seed), SITUATION],
        env=_environ(PSYCHE_OFFLINE_TPS="0", PSYCHE_DB=":memory:"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def _baseline_files(events: list[dict[str, Any]], tmp: Path) -> tuple[Path, Path]:
    from psyche_sse.config import load_settings
    from psyche_sse.events import Event, EventType
    from psyche_sse.web.render import Renderer

    renderer = Renderer(load_settings())
    raw, html = tmp / "raw.jsonl", tmp / "html.jsonl"
    with raw.open("w") as fr, html.open("w") as fh:
        for line in events:
            data = {k: v for k, v in line.items() if k != "id"}
            event = Event(line["id"], EventType(line["type"]), data)
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
            done = _wait_idle(srv, sid)
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


# --- 2. fan-out -----------------------------------------------------------------------------


def fanout(report: Report, sizes: tuple[int, ...] = (100, 500, 1000)) -> None:
    rows = []
    with server(PSYCHE_OFFLINE_TPS="50") as srv:
        sid, last = _session_with_history(srv)
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
            last = _wait_idle(srv, sid)
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


# --- 3. many rounds -------------------------------------------------------------------------


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
        result = load(
            srv.url("/api/rounds"),
            "--clients",
            n,
            "--method",
            "POST",
            "--body",
            body,
            "--until",
            "round_complete",
            "--duration",
            300,
            "--per-client",
        )
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


# --- 4. time to first event -----------------------------------------------------------------


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


# --- 5. idle clients ------------------------------------------------------------------------


def idle(report: Report, n: int = 2000) -> None:
    rows = []
    for kind in ("baseline", "psyche"):
        with server(kind) as srv:
            if kind == "psyche":
                sid, last = _session_with_history(srv)
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


# --- 6. start-up ----------------------------------------------------------------------------


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
            env=_environ(),
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


# --- main -----------------------------------------------------------------------------------

# --- 7. memory over many rounds -----------------------------------------------------------


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


MEASUREMENTS = {
    "throughput": throughput,
    "fanout": fanout,
    "rounds": many_rounds,
    "first": first_event,
    "idle": idle,
    "startup": startup,
    "memory": memory,
}


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import uvicorn

    loop = "uvloop" if _has("uvloop") else "asyncio"
    http = "httptools" if _has("httptools") else "h11"
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"{mem:.0f} GiB; Python {platform.python_version()}; uvicorn {uvicorn.__version__} "
        f"with {loop} and {http}"
    )


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated names")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement: {', '.join(sorted(unknown))}")
    report = Report()
    header = f"Machine: {machine()}\n"
    print(header, flush=True)
    started = time.perf_counter()
    for name in names:
        MEASUREMENTS[name](report)
    elapsed = time.perf_counter() - started
    print(f"bench: {elapsed:.0f} s in all", flush=True)
    if args.out:
        args.out.write_text(header + "\n" + "\n".join(report.sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
