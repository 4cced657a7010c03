"""Real servers on loopback, each in its own process: the one launcher of the tests and the
bench.

Event streams never end, and an in-process ASGI client buffers a response until it does, so
what needs a socket (resuming, disconnects, heartbeats, shutdown, the browser, load) talks to
uvicorn in a process of its own, with its own settings and its own database. The server binds
port 0 and reports the port it got, so there is no race for a free port.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
_READY = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


def psyche() -> list[str]:
    """The command of the service: ``python -m psyche_sse serve``."""
    return [sys.executable, "-m", "psyche_sse", "serve"]


def environ(**extra: str) -> dict[str, str]:
    """This process's environment without the developer's PSYCHE_* settings, running this
    checkout's code whatever is installed, with ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSYCHE_")}
    return {**env, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", **extra}


def settings_env(db_dir: Path, **settings: str) -> dict[str, str]:
    """The service's environment: loopback, port 0, a database in ``db_dir``, no config file,
    and each keyword as its ``PSYCHE_*`` setting (``offline_tps="0"``)."""
    (db_dir / "none.toml").write_text("")
    env = {
        "PSYCHE_HOST": "127.0.0.1",
        "PSYCHE_PORT": "0",
        "PSYCHE_DB": str(db_dir / "psyche.db"),
        "PSYCHE_CONFIG": str(db_dir / "none.toml"),
    }
    env.update({f"PSYCHE_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[str]
    started: float  # time.perf_counter() when the process was started
    up_s: float  # from then until it listened
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def log(self) -> str:
        return "".join(self.lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=httpx.Timeout(15.0), **kwargs)


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def launch(
    command: Sequence[str], env: Mapping[str, str], *, many_files: bool = False
) -> LiveServer:
    """Start a uvicorn process (bound to 127.0.0.1) and return once it listens. Its output
    is read all along (the pipe never fills up) and kept in :attr:`LiveServer.lines`.
    ``many_files``: the process may open as many files as the hard limit allows."""
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
        cwd=ROOT,
        preexec_fn=_raise_fd_limit if many_files else None,
    )
    lines: list[str] = []
    ready = threading.Event()
    found: list[str] = []
    up: list[float] = []

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = _READY.search(line)
            if match and not found:
                up.append(time.perf_counter() - started)
                found.append(match.group(1))
                ready.set()
        ready.set()  # the process ended without ever listening

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    ready.wait(START_TIMEOUT)
    server = LiveServer(found[0] if found else "", process, started, up[0] if up else 0.0)
    server.lines, server.reader = lines, reader
    if not found:
        stop_server(server)
        raise RuntimeError("the server did not start:\n" + server.log)
    return server


def start_server(
    db_dir: Path, env_extra: dict[str, str] | None = None, **settings: str
) -> LiveServer:
    """``psyche-sse serve`` on a database in ``db_dir``, with these settings (see
    :func:`settings_env`) and extra environment variables."""
    env = environ(**(env_extra or {}))
    env.update(settings_env(db_dir, **settings))
    return launch(psyche(), env)


def stop_server(server: LiveServer) -> None:
    """SIGTERM, as a process manager stops it; SIGKILL if it has not ended in time."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    if server.reader is not None:
        server.reader.join(5)
    if server.process.stderr is not None:
        server.process.stderr.close()
    if os.environ.get("WEB_TEST_SERVER_LOG"):
        print(f"\n--- server {server.url} ---\n{server.log}")


def kill_server(server: LiveServer) -> None:
    """SIGKILL: a crash, with no chance to save or mark anything."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    stop_server(server)  # closes its pipes


@contextmanager
def running(
    db_dir: Path, env_extra: dict[str, str] | None = None, **settings: str
) -> Iterator[LiveServer]:
    """:func:`start_server` for a ``with`` block, stopped at its end."""
    server = start_server(db_dir, env_extra, **settings)
    try:
        yield server
    finally:
        stop_server(server)
