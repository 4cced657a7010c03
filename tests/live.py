"""Real servers on loopback: the one launcher of the tests and the bench.

Event streams never end, and an in-process ASGI client buffers a response until it does, so
what needs a socket (resuming, disconnects, heartbeats, the browser, load) talks to uvicorn
on a real port, with its own settings and its own database: in a thread of this process
(:func:`serve_in_thread`, which starts in milliseconds, LiteLLM being imported here already),
or in a process of its own (:func:`start_server`) where the process is what is tested: a
crash, a signal, what it writes. Each binds port 0 and reports the port it got, so there is
no race for a free port.
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

from psyche_sse.config import Settings
from psyche_sse.llm import preload
from psyche_sse.web.server import Server
from psyche_sse.web.server import server as web_server

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# Any loopback address: 127.0.0.2 stands for a second machine in the scaling tests.
_READY = re.compile(r"Uvicorn running on (http://127\.\d+\.\d+\.\d+:\d+)")


def psyche() -> list[str]:
    """The command of the service: ``python -m psyche_sse serve``."""
    return [sys.executable, "-m", "psyche_sse", "serve"]


def run_psyche(
    env: Mapping[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """``psyche-sse ARGS`` (this checkout's) as a process of its own with ``env``, to its end
    (at most a minute): what it printed and its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "psyche_sse", *args],
        env=dict(env),
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def environ(**extra: str) -> dict[str, str]:
    """This process's environment without the developer's PSYCHE_* settings, running this
    checkout's code whatever is installed, with ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSYCHE_")}
    return {**env, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", **extra}


def settings_env(db_dir: Path, **settings: str) -> dict[str, str]:
    """The service's environment: loopback, port 0, a database in ``db_dir``, no config file,
    and each keyword as its ``PSYCHE_*`` setting (``offline_tps="0"``).

    Heartbeats every 2 s unless given: the clients' read timeout (15 s) then never ends a
    stream that is only quiet, such as a round waiting for LiteLLM's import on a loaded
    machine, as a real client's would not.
    """
    (db_dir / "none.toml").write_text("")
    env = {
        "PSYCHE_HOST": "127.0.0.1",
        "PSYCHE_PORT": "0",
        "PSYCHE_DB": str(db_dir / "psyche.db"),
        "PSYCHE_CONFIG": str(db_dir / "none.toml"),
        "PSYCHE_HEARTBEAT": "2",
    }
    env.update({f"PSYCHE_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass
class LiveServer:
    """A server listening on loopback: where it is, and clients for it."""

    url: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=httpx.Timeout(15.0), **kwargs)


@dataclass
class ServerProcess(LiveServer):
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


@dataclass
class ServerThread(LiveServer):
    server: Server
    thread: threading.Thread


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def launch(
    command: Sequence[str], env: Mapping[str, str], *, many_files: bool = False
) -> ServerProcess:
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
    server = ServerProcess(found[0] if found else "", process, started, up[0] if up else 0.0)
    server.lines, server.reader = lines, reader
    if not found:
        stop_server(server)
        raise RuntimeError("the server did not start:\n" + server.log)
    return server


def start_server(
    db_dir: Path, env_extra: dict[str, str] | None = None, **settings: str
) -> ServerProcess:
    """``psyche-sse serve`` on a database in ``db_dir``, with these settings (see
    :func:`settings_env`) and extra environment variables."""
    env = environ(**(env_extra or {}))
    env.update(settings_env(db_dir, **settings))
    return launch(psyche(), env)


def serve_in_thread(db_dir: Path, **settings: str) -> ServerThread:
    """The app of these settings (as :func:`start_server` takes them, on a database in
    ``db_dir``) under uvicorn in a thread of this process, as ``psyche-sse serve`` runs it:
    for what needs a real socket but not a process of its own."""
    # The app's warm-up thread would otherwise import LiteLLM under a test's warning filters.
    preload()
    config = Settings(host="127.0.0.1", port=0, db=db_dir / "psyche.db", **settings)
    server = web_server(config, log_config=None)
    thread = threading.Thread(target=server.run, name=f"server-{db_dir.name}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    waiting = threading.Event()
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the server did not start (its error is in the output above)")
        waiting.wait(0.005)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return ServerThread(f"http://{host}:{port}", server, thread)


def stop_server(server: LiveServer) -> None:
    """A process: SIGTERM, as a process manager stops it; SIGKILL if it has not ended in
    time. A thread: as uvicorn stops on SIGTERM."""
    if isinstance(server, ServerThread):
        server.server.should_exit = True
        server.thread.join(STOP_TIMEOUT)
        assert not server.thread.is_alive(), f"the server at {server.url} did not stop"
        return
    assert isinstance(server, ServerProcess)
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


def kill_server(server: ServerProcess) -> None:
    """SIGKILL: a crash, with no chance to save or mark anything."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    stop_server(server)  # closes its pipes


@contextmanager
def running(
    db_dir: Path, env_extra: dict[str, str] | None = None, **settings: str
) -> Iterator[ServerProcess]:
    """:func:`start_server` for a ``with`` block, stopped at its end."""
    server = start_server(db_dir, env_extra, **settings)
    try:
        yield server
    finally:
        stop_server(server)
