"""The servers measured: ``psyche-sse serve`` or the bare sse-starlette floor
(``bench.baseline``), each a uvicorn process started by the tests' launcher, and the psyche
sessions the measurements start from."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.live import ServerProcess, environ, launch, psyche, settings_env, stop_server

from bench.common import PY, SITUATION, request, wait_until

BASELINE = [PY, "-m", "uvicorn", "bench.baseline:app", "--host", "127.0.0.1", "--port", "0"]
# INFO for the line that says where it listens; no access log, so it logs no more than before.
BASELINE += ["--log-level", "info", "--no-access-log"]


@dataclass
class Server:
    process: ServerProcess
    startup_s: float  # process start to the first 200 from /healthz
    ready_s: float  # process start to LiteLLM loaded (psyche) or as startup_s (baseline)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return self.process.port

    def url(self, path: str) -> str:
        return f"{self.process.url}{path}"


def _healthy(process: ServerProcess) -> bool:
    if process.process.poll() is not None:
        raise RuntimeError(f"the server exited with {process.process.returncode}")
    try:
        return request(process.port, "GET", "/healthz")[0] == 200
    except OSError:
        return False


@contextlib.contextmanager
def server(kind: str = "psyche", **env: str) -> Iterator[Server]:
    """A server process on a free port, up (``/healthz`` answers 200) on entry."""
    tmp = Path(tempfile.mkdtemp(prefix="psyche-bench-"))
    if kind == "psyche":
        command, variables = psyche(), {**environ(**env), **settings_env(tmp)}
    else:
        command, variables = BASELINE, environ(**env)
    try:
        process = launch(command, variables, many_files=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        try:
            wait_until(lambda: _healthy(process), 120, "the server to start")
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}:\n{process.log[-2000:]}") from None
        up = time.perf_counter() - process.started
        if kind == "psyche":
            # Measure the service warm: LiteLLM imported (it loads while the app serves).
            wait_until(
                lambda: request(process.port, "GET", "/healthz")[1]["llm"] == "ready",
                120,
                "LiteLLM to load",
                every=0.02,
            )
        yield Server(process, up, time.perf_counter() - process.started)
    finally:
        stop_server(process)
        shutil.rmtree(tmp, ignore_errors=True)


def session_with_history(srv: Server) -> tuple[str, int]:
    """A session whose first round was stopped at once: (session id, its last event id)."""
    status, body = request(srv.port, "POST", "/api/rounds", {"situation": SITUATION})
    assert status == 202, body
    sid = body["session_id"]
    # Stopped once it has begun: a round stopped before its first event would leave no
    # round to wait for the end of.
    wait_until(
        lambda: request(srv.port, "GET", f"/api/sessions/{sid}")[1]["rounds"],
        120,
        "the round to begin",
        every=0.02,
    )
    request(srv.port, "POST", f"/api/sessions/{sid}/stop", {})
    return sid, wait_idle(srv, sid)


def wait_idle(srv: Server, sid: str) -> int:
    """Once the session's round has ended: its last event id."""
    state: dict[str, Any] = {}

    def idle() -> bool:
        state.update(request(srv.port, "GET", f"/api/sessions/{sid}")[1])
        # Not running, and the store has the round's end: a stream from its last event id
        # on then starts with the next round (else clients waiting for a round_complete
        # could take the last round's for it).
        rounds = state["rounds"]
        return not state["running"] and bool(rounds) and rounds[-1]["status"] != "running"

    wait_until(idle, 120, "the round to end", every=0.05)
    return int(state["last_event_id"])
