"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package, started by the
tests themselves on loopback, in a directory of their own, one server per test process
(each pytest-xdist worker starts its own), and a fresh database per test.

PostgreSQL refuses to run as root: as root (CI) the server runs as the ``postgres`` user
the package creates, in a directory that user owns; as anyone else, as that user. It is
fast on purpose (``fsync=off``): nothing here must survive a power cut, only a crash.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path("/usr/lib/postgresql")
USER = "psyche"
PASSWORD = "a-test-password-9f3c"
SUPERUSER_PASSWORD = "a-superuser-password-71d2"
START_TIMEOUT = 60


def bin_dir() -> Path | None:
    """The newest installed server's programs (``/usr/lib/postgresql/15/bin``), or None."""
    found = sorted(
        (p for p in ROOT.glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server: where it listens, and its databases."""

    root: Path
    port: int
    bin: Path
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str, *, user: str = USER, password: str = PASSWORD) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    @contextmanager
    def admin(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        url = self.url("postgres", user="postgres", password=SUPERUSER_PASSWORD)
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            yield conn

    def create_database(self) -> str:
        """A new empty database owned by the test user: its URL."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {USER} TEMPLATE template0")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _run(command: list[str], root: Path) -> None:
    done = subprocess.run(
        _as_server_user(command),
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
        timeout=START_TIMEOUT + 30,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")


def start() -> PostgresServer:
    """initdb and start a server on a free loopback port; it waits until it accepts
    connections (``pg_ctl -w``)."""
    programs = bin_dir()
    if programs is None:
        raise RuntimeError(
            "PostgreSQL is not installed: run `make system-packages` (Debian's postgresql)"
        )
    # Not under pytest's temporary directory: its parents are private to root.
    root = Path(tempfile.mkdtemp(prefix="psyche-pg-"))
    root.chmod(0o700)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    pwfile = root / "pwfile"
    pwfile.write_text(SUPERUSER_PASSWORD + "\n")
    if os.geteuid() == 0:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    _run(
        [
            str(programs / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            "postgres",
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ],
        root,
    )
    error: RuntimeError | None = None
    for _ in range(3):  # another process may take the free port first
        port = _free_port()
        options = (
            # A commit still reaches the OS before it returns (synchronous_commit stays on),
            # so a test that kills the server loses nothing it committed.
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
            " -c full_page_writes=off -c shared_buffers=16MB"
            " -c max_connections=200"
        )
        try:
            _run(
                [
                    str(programs / "pg_ctl"),
                    "-D",
                    str(root / "data"),
                    "-l",
                    str(root / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(START_TIMEOUT),
                    "start",
                ],
                root,
            )
        except RuntimeError as exc:
            error = exc
            continue
        server = PostgresServer(root, port, programs)
        with server.admin() as conn:
            conn.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        return server
    log = root / "server.log"
    output = log.read_text(errors="replace") if log.exists() else ""
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"the PostgreSQL server did not start: {error}\n{output}")


def restart(server: PostgresServer) -> None:
    """Stop the server at once, as a crash does (every connection drops), and start it again
    on the same port; back when it accepts connections."""
    data, log = str(server.root / "data"), str(server.root / "server.log")
    # With its log file named again: else the server's output would hold our pipe open.
    _run(
        [str(server.bin / "pg_ctl"), "-D", data, "-l", log, "-m", "immediate", "-w", "restart"],
        server.root,
    )


def stop(server: PostgresServer) -> None:
    try:
        # Immediate: what it holds is thrown away with its directory anyway.
        data = str(server.root / "data")
        _run([str(server.bin / "pg_ctl"), "-D", data, "-m", "immediate", "stop"], server.root)
    finally:
        shutil.rmtree(server.root, ignore_errors=True)
