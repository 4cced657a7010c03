"""What every measurement uses: the server's CPU and memory, requests, load-client processes,
and the report's tables."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.live import ROOT, environ

PY = sys.executable
SITUATION = "I was passed over for promotion and my manager will not say why"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") / 1024
LOAD_PROCESSES = 4  # the clients of one measurement, spread over this many processes


# --- processes ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_kb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB


def raise_fd_limit() -> None:
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


def load(url: str, *args: str | int | float) -> dict[str, Any]:
    """One load-client process to completion; its result."""
    cmd = [PY, "-m", "bench.loadclient", url, *map(str, args)]
    done = subprocess.run(
        cmd,
        env=environ(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=raise_fd_limit,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load client failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


class Crowd:
    """Clients spread over several load processes, all connected on entry. Several URLs (the
    same stream on several workers): the processes take them in turn."""

    def __init__(self, url: str | Sequence[str], clients: int, *args: str | int | float) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        self.procs: list[subprocess.Popen[str]] = []
        per = [
            clients // LOAD_PROCESSES + (i < clients % LOAD_PROCESSES)
            for i in range(LOAD_PROCESSES)
        ]
        for i, n in enumerate(per):
            if not n:
                continue
            cmd = [PY, "-m", "bench.loadclient", urls[i % len(urls)], "--clients", str(n)]
            cmd += ["--signal-ready"]
            cmd += ["--ramp", *map(str, args)]
            self.procs.append(
                subprocess.Popen(
                    cmd,
                    env=environ(),
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    preexec_fn=raise_fd_limit,
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


def load_rounds(url: str, clients: int, body: str, *args: str | int | float) -> dict[str, Any]:
    """A load client starting ``clients`` rounds (``POST`` ``body`` to ``url``), each reading
    its stream to the round's end: :func:`load`, with ``args`` added."""
    return load(
        url,
        "--clients",
        clients,
        "--method",
        "POST",
        "--body",
        body,
        "--until",
        "round_complete",
        "--duration",
        300,
        *args,
    )


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
