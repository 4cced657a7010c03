"""``psyche-sse serve --workers N``: N worker processes serving one port.

This process binds the port once and starts N ``psyche-sse serve`` processes that serve
the socket they inherit (uvicorn's ``fd``); the kernel hands each new connection to one of
them. The workers share nothing in memory: their events, leases and control go through
Redis (``PSYCHE_REDIS_URL``), their sessions through the store, so any request can land on
any of them. A worker that dies is started again; SIGTERM or Ctrl-C stops them all.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ..config import Settings

log = logging.getLogger(__name__)

STOP_SECONDS = 15.0
MAX_WORKERS = 64


def bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host.strip("[]"), settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(settings: Settings, workers: int, worker_args: Sequence[str]) -> int:
    """Serve with ``workers`` processes until told to stop; ``worker_args``: the options of
    ``psyche-sse serve`` each worker gets (the ones this process was given)."""
    sock = bind(settings)
    fd = sock.fileno()
    port = sock.getsockname()[1]
    command = [sys.executable, "-m", "psyche_sse", "serve", *worker_args, "--fd", str(fd)]
    stopping = threading.Event()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, pass_fds=(fd,))

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = [start() for _ in range(workers)]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(
        f"psyche-sse: {workers} workers serving on http://{host}:{port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stopping.wait(0.5):  # a worker's exit has no event to wait on
            for i, child in enumerate(children):
                if child.poll() is not None and not stopping.is_set():
                    print(
                        f"psyche-sse: worker {child.pid} exited ({child.returncode}); "
                        "starting another",
                        file=sys.stderr,
                        flush=True,
                    )
                    children[i] = start()
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
        sock.close()
    return 0
