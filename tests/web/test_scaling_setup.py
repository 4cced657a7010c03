"""Three workers on two machines, set up as docs/scaling.md says, run for real.

What the tests run is read from the repository: the systemd unit ``psyche-sse@.service``
(its ``ExecStart``, with the instance's port), each machine's environment file, nginx's
``upstream`` block beside the server block of docs/deploy.md. A real ``redis-server``
(with a password) and a real PostgreSQL stand for machine A's; 127.0.0.1 is machine A
(10.0.0.1 in the files) and 127.0.0.2 machine B (10.0.0.2). Only what cannot be the same
here changes: the addresses, the ports, the passwords, the installed command
(``python -m psyche_sse``, this checkout's code), and for the tests a slow offline model,
frequent heartbeats and each worker's access log (to tell which worker served what).
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from psyche_sse.config import Settings
from tests import postgres
from tests.live import (
    ROOT,
    ServerProcess,
    environ,
    kill_server,
    launch,
    psyche,
    run_psyche,
    stop_server,
)
from tests.nginx import Nginx, start_nginx, stop_nginx
from tests.redis_server import RedisServer, redis_server
from tests.waiting import wait_for
from tests.web.accounts import sign_in
from tests.web.sse import (
    ROUND_END,
    Msg,
    assert_whole_round,
    parse,
    round_over,
    start_round,
    texts,
)

# Three workers, nginx and rounds of seconds: more than the suite's two minutes a test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
UNIT = UNITS / "psyche-sse@.service"
UPSTREAM = DEPLOY / "nginx" / "psyche-sse-upstream.conf"
ENV_FILES = {
    "10.0.0.1": DEPLOY / "env" / "machine-a.env",
    "10.0.0.2": DEPLOY / "env" / "machine-b.env",
}
SCALING_DOC = ROOT / "docs" / "scaling.md"
INSTALLED = "/opt/psyche-sse/venv/bin/psyche-sse"
# The documented machines' private addresses, and the loopback addresses standing for them.
MACHINES = {"10.0.0.1": "127.0.0.1", "10.0.0.2": "127.0.0.2"}
REDIS_PASSWORD = "a-redis-password-5e1b"
SECRET_KEY = "a-shared-signing-key-0c7d9a"
ADMIN, ADMIN_PASSWORD = "alice", "alice-password"
CLIENT = "203.0.113.7"  # TEST-NET-3: an address no test machine has
# Slow enough that a round is still running while the test acts on it.
SLOW = "25"
# How long a test waits for a round's end: far beyond any lease, for a loaded machine.
ROUND_TIMEOUT = 120.0


def read_env(path: Path) -> dict[str, str]:
    """An ``EnvironmentFile``: ``NAME=value`` lines; blank lines and comments skipped."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def exec_start(unit: Path, instance: str) -> list[str]:
    """The unit's ``ExecStart`` for ``instance`` (``%i``), as arguments."""
    (line,) = re.findall(r"^ExecStart=(.+)$", unit.read_text(), re.M)
    return [arg.replace("%i", instance) for arg in shlex.split(line)]


def upstream_servers() -> list[tuple[str, int]]:
    """The ``server ADDRESS:PORT`` lines of the documented upstream block."""
    found = re.findall(r"^\s*server\s+([\d.]+):(\d+)\b[^;]*;", UPSTREAM.read_text(), re.M)
    assert found, f"no server line in {UPSTREAM}"
    return [(address, int(port)) for address, port in found]


def machine_of(address: str) -> str:
    """The machine (its private address) of a worker nginx, on machine A, reaches at
    ``address``: its loopback is machine A's."""
    return "10.0.0.1" if address == "127.0.0.1" else address


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def require_password(redis: RedisServer) -> None:
    """``requirepass`` as docs/scaling.md sets it in redis.conf, set on the running server."""
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
        sock.sendall(f"CONFIG SET requirepass {REDIS_PASSWORD}\r\n".encode())
        assert sock.recv(16).startswith(b"+OK")


@dataclass
class Worker:
    """A worker as ``systemctl start psyche-sse@PORT`` starts it on its machine."""

    name: str  # "A:8001": the machine and the documented instance
    command: list[str]
    env: dict[str, str]
    process: ServerProcess | None = None

    @property
    def url(self) -> str:
        assert self.process is not None
        return self.process.url

    def start(self) -> None:
        # Its standard output (the access log) with its standard error, as the journal
        # keeps both: the tests read them to tell which worker served what.
        self.process = launch(["sh", "-c", 'exec "$@" 1>&2', "sh", *self.command], self.env)

    def stop(self) -> None:
        if self.process is not None:
            stop_server(self.process)

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", httpx.Timeout(15.0))
        return httpx.Client(base_url=self.url, **kwargs)

    def served(self, marker: str) -> bool:
        """Whether this worker's access log has a request whose URL ends with ``marker``."""
        return self.process is not None and f"{marker} HTTP/" in self.process.log

    def running(self) -> int:
        # A long timeout: on a loaded machine a worker may answer late.
        with self.client(timeout=httpx.Timeout(60.0)) as client:
            count: int = client.get("/healthz").json()["running"]
            return count


@dataclass
class Setup:
    nginx: Nginx
    workers: list[Worker]
    token: str
    probes: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client of nginx with the admin's token, as a script's."""
        return self.nginx.client(headers={"Authorization": f"Bearer {self.token}"}, **kwargs)

    def marker(self) -> str:
        """A query parameter unique to one request, to find it in the access logs."""
        return f"probe={next(self.probes)}"

    def served_by(self, marker: str) -> list[str]:
        return [w.name for w in self.workers if w.served(marker)]

    def runners(self) -> list[str]:
        """The workers running a round now, by their /healthz."""
        return [w.name for w in self.workers if w.process is not None and w.running()]


def worker_env(machine: str, where: Path, redis: RedisServer, database: str) -> dict[str, str]:
    """``machine``'s documented environment file with this test's addresses, ports and
    passwords, and the tests' own settings on top."""
    pg = re.fullmatch(r"postgresql://psyche:(.+)@127\.0\.0\.1:(\d+)/(\w+)", database)
    assert pg is not None, database
    here = {
        **MACHINES,
        ":6379/": f":{redis.port}/",
        ":5432/psyche": f":{pg[2]}/{pg[3]}",
        "REDIS-PASSWORD": REDIS_PASSWORD,
        "DB-PASSWORD": pg[1],
        "SECRET-KEY": SECRET_KEY,
    }
    env: dict[str, str] = {}
    for name, value in read_env(ENV_FILES[machine]).items():
        for documented, local in here.items():
            value = value.replace(documented, local)
        env[name] = value
    assert env["PSYCHE_REDIS_URL"] == f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis.port}/0"
    assert env["PSYCHE_DATABASE_URL"] == database
    assert env["PSYCHE_SECRET_KEY"] == SECRET_KEY
    (where / "none.toml").write_text("")
    tests_own = {
        # No psyche.toml of the checkout's directory: only the documented settings.
        "PSYCHE_CONFIG": str(where / "none.toml"),
        "PSYCHE_OFFLINE_TPS": SLOW,
        "PSYCHE_HEARTBEAT": "2",
        "PSYCHE_ACCESS_LOG": "true",
    }
    return environ(**env, **tests_own)


def command_for(port: int) -> list[str]:
    """The unit's ``ExecStart`` for the instance ``port``, running this checkout's code."""
    command = exec_start(UNIT, str(port))
    assert command[0] == INSTALLED, command
    return [*psyche()[:-1], *command[1:]]


def cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    """``psyche-sse ARGS`` with a machine's environment (as docs/scaling.md runs it): its
    standard output."""
    done = run_psyche(env, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


def start_workers(where: Path, redis: RedisServer, database: str) -> list[Worker]:
    """One worker per documented upstream server, on its machine's address, each on a port
    of its own (the instance), started one after another as systemd would."""
    out: list[Worker] = []
    for address, port in upstream_servers():
        machine = machine_of(address)
        name = f"{'AB'[list(MACHINES).index(machine)]}:{port}"
        local = MACHINES[machine]
        env = worker_env(machine, where, redis, database)
        assert env["PSYCHE_HOST"] == local, (name, env["PSYCHE_HOST"])
        error: RuntimeError | None = None
        for _ in range(3):  # another process may take the free port first
            worker = Worker(name, command_for(free_port(local)), env)
            try:
                worker.start()
            except RuntimeError as exc:
                error = exc
                continue
            out.append(worker)
            break
        else:
            raise AssertionError(f"worker {name} did not start: {error}")
    return out


def upstream_here(workers: list[Worker]) -> str:
    """The documented upstream block with each server line naming its worker's address."""
    block = UPSTREAM.read_text()
    servers = iter(workers)

    def local(match: re.Match[str]) -> str:
        return f"{match[1]}{next(servers).url.removeprefix('http://')};"

    block = re.sub(r"^(\s*server\s+)[\d.]+:\d+;", local, block, flags=re.M)
    assert next(servers, None) is None
    return block


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: postgres.PostgresServer
) -> Iterator[Setup]:
    where = tmp_path_factory.mktemp("scaling")
    with ExitStack() as stack:
        (where / "redis").mkdir()
        redis = stack.enter_context(redis_server(where / "redis"))
        require_password(redis)
        database = postgres_server.create_database()
        stack.callback(postgres_server.drop_database, database)
        # The admin and a token, made on machine A before any worker starts.
        on_a = worker_env("10.0.0.1", where, redis, database)
        cli(on_a, "user", "add", ADMIN, "--admin", "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
        token = cli(on_a, "token", "create", "scripts", "--user", ADMIN).strip()
        workers: list[Worker] = []

        def stop_workers() -> None:
            for worker in workers:
                worker.stop()

        stack.callback(stop_workers)
        workers.extend(start_workers(where, redis, database))
        nginx = start_nginx(where / "nginx", "http://psyche_sse", beside=upstream_here(workers))
        stack.callback(stop_nginx, nginx)
        yield Setup(nginx, workers, token)


def test_the_deploy_files_and_the_note_name_only_real_settings() -> None:
    names = set()
    for path in [*ENV_FILES.values(), SCALING_DOC, UNIT]:
        names |= set(re.findall(r"\bPSYCHE_([A-Z_]+)\b", path.read_text()))
    known = {n.upper() for n in Settings.model_fields} | {"CONFIG"}
    assert names and names <= known, names - known
    for machine in ENV_FILES:
        env = read_env(ENV_FILES[machine])
        assert env["PSYCHE_HOST"] == ("127.0.0.1" if machine == "10.0.0.1" else machine)
    # Every machine shares the same Redis, database and signing key.
    shared = ("PSYCHE_REDIS_URL", "PSYCHE_DATABASE_URL", "PSYCHE_SECRET_KEY")
    a, b = (read_env(p) for p in ENV_FILES.values())
    assert all(a[name] == b[name] for name in shared)


def test_the_note_shows_the_deploy_files_as_they_are() -> None:
    doc = SCALING_DOC.read_text()
    for path in [*ENV_FILES.values(), UNIT, UPSTREAM]:
        assert path.read_text().rstrip("\n") in doc, path
    assert "proxy_pass http://psyche_sse;" in doc
    assert "bench/results/2026-11-30-scaling.md" in doc  # where its figures come from


def test_the_unit_files_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here: the unit files are not verified")
    installed = shutil.which("psyche-sse") or str(Path(sys.executable).parent / "psyche-sse")
    assert Path(installed).exists(), "psyche-sse is not installed: make install"
    units = sorted(UNITS.glob("*.service"))
    assert UNIT in units
    for unit in units:
        # A template is verified as one of its instances (systemd checks it only then),
        # with the command where it is installed here.
        name = unit.name.replace("@.", "@8001.")
        (tmp_path / name).write_text(unit.read_text().replace(INSTALLED, installed))
        checked = subprocess.run(
            [analyze, "verify", str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr


def test_signing_in_and_tokens_work_on_every_worker(setup: Setup) -> None:
    """The signing key is shared: a cookie made by whichever worker nginx chose is good on
    every worker; a token, kept in PostgreSQL, too; and each worker believes nginx."""
    with setup.nginx.client() as browser:
        sign_in(browser, ADMIN, ADMIN_PASSWORD)
        cookie = browser.cookies["psyche_login"]
    for worker in setup.workers:
        for credentials in (
            {"Cookie": f"psyche_login={cookie}"},
            {"Authorization": f"Bearer {setup.token}"},
        ):
            with worker.client(headers=credentials) as client:
                seen = client.get("/api/whoami")
            assert seen.status_code == 200, (worker.name, seen.text)
            assert seen.json()["user"] == ADMIN, worker.name
    # Through nginx, until every worker has answered: each sees the client and https.
    answered: set[str] = set()

    def every_worker_answered() -> bool:
        marker = setup.marker()
        with setup.nginx.client(cookies={"psyche_login": cookie}) as client:
            seen = client.get(f"/api/whoami?{marker}", headers={"X-Forwarded-For": CLIENT})
        assert seen.json() == {"client": CLIENT, "scheme": "https", "user": ADMIN}
        wait_for(lambda: setup.served_by(marker), 10)
        answered.update(setup.served_by(marker))
        return len(answered) == len(setup.workers)

    wait_for(every_worker_answered, 60)


def whoami_served_by(setup: Setup) -> list[str]:
    """One request through nginx: the workers that served it."""
    marker = setup.marker()
    with setup.client() as client:
        assert client.get(f"/api/whoami?{marker}").status_code == 200
    wait_for(lambda: setup.served_by(marker), 10)
    return setup.served_by(marker)


@dataclass
class Viewer:
    """What one stream connection through nginx showed, and which worker served it."""

    marker: str
    seen: list[Msg] = field(default_factory=list)
    heartbeats: int = 0
    ended_by: str = "the end of the round"


def watch(
    setup: Setup,
    url: str,
    stop: Callable[[Msg], bool],
    *,
    on_event: Callable[[Msg], None] = lambda msg: None,
    after: int | None = None,
) -> Viewer:
    """One connection to ``url`` through nginx, read until ``stop`` accepts an event, the
    connection ends (a worker killed), or ``ROUND_TIMEOUT``; with ``Last-Event-ID: after``
    when given."""
    headers = {} if after is None else {"Last-Event-ID": str(after)}
    viewer = Viewer(setup.marker())
    sep = "&" if "?" in url else "?"
    deadline = time.monotonic() + ROUND_TIMEOUT
    with setup.client() as client:
        try:
            with connect_sse(
                client, "GET", f"{url}{sep}{viewer.marker}", headers=headers
            ) as source:
                for sse in source.iter_sse():
                    if not sse.data:  # a heartbeat
                        viewer.heartbeats += 1
                    else:
                        msg = parse(sse)
                        viewer.seen.append(msg)
                        on_event(msg)
                        if stop(msg):
                            return viewer
                    if time.monotonic() > deadline:
                        viewer.ended_by = "the test's timeout"
                        return viewer
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            viewer.ended_by = f"the connection breaking ({exc.__class__.__name__})"
            return viewer
        except httpx.ReadTimeout:
            viewer.ended_by = "nothing, not even a heartbeat, for the client's read timeout"
            return viewer
    viewer.ended_by = "the server closing the stream"
    return viewer


def diagnosis(setup: Setup, viewers: list[Viewer], runner: list[str]) -> str:
    lines = [f"round running on: {runner}"]
    for worker in setup.workers:
        log = worker.process.lines if worker.process is not None else []
        try:
            with worker.client(timeout=httpx.Timeout(5.0)) as client:
                health = client.get("/healthz").text
        except httpx.HTTPError as exc:
            health = f"no answer ({exc.__class__.__name__})"
        lines.append(f"{worker.name} /healthz now: {health}")
        lines.extend(f"  {line.rstrip()}" for line in log[-12:])
    for v in viewers:
        ids = [m.id for m in v.seen]
        lines.append(
            f"viewer {v.marker} served by {setup.served_by(v.marker)}: ended by {v.ended_by},"
            f" {v.heartbeats} heartbeats, ids {ids[:3]}...{ids[-3:]} ({len(ids)}),"
            f" last {v.seen[-1].type if v.seen else None}"
        )
        for m in v.seen:
            if m.type in ("agent_processing_complete", "round_complete"):
                meta = m.data.get("metadata") or {}
                why = meta.get("error_class") or m.data.get("reason")
                status = m.data.get("status") or meta.get("status")
                lines.append(f"  {m.id} {m.type} {status}: {why}")
    return "\n".join(lines)


def ended(msg: Msg) -> bool:
    """A round's last event; or a ``session_history`` (sent when the server cannot replay
    from the id given) that shows the round over."""
    return msg.type == ROUND_END or (msg.type == "session_history" and round_over(msg))


def follow(
    setup: Setup,
    url: str,
    runner: list[str],
    *,
    on_event: Callable[[Msg], None] = lambda msg: None,
    after: int | None = None,
) -> tuple[list[Msg], list[Viewer]]:
    """The round's events to its end, as a browser follows it through nginx: when the
    connection ends first, again with the last id seen."""
    viewers: list[Viewer] = []
    msgs: list[Msg] = []
    for _ in range(10):
        viewer = watch(setup, url, ended, on_event=on_event, after=after)
        viewers.append(viewer)
        msgs.extend(viewer.seen)
        if msgs:
            after = msgs[-1].id
            if ended(msgs[-1]):
                return msgs, viewers
        assert viewer.ended_by != "the test's timeout", diagnosis(setup, viewers, runner)
    raise AssertionError(diagnosis(setup, viewers, runner))


def assert_no_gap(msgs: list[Msg]) -> None:
    """Ids strictly increasing; each turn's deltas make the text it ended with (or the
    start of it, for a turn cut short)."""
    ids = [m.id for m in msgs]
    assert ids == sorted(set(ids)), "ids strictly increasing, no duplicate"
    streamed = texts(msgs)
    for m in msgs:
        if m.type == "agent_processing_complete":
            final = m.data["final_content"]
            if m.data["metadata"]["status"] == "ok":
                assert final == streamed.get(m.turn_id or "", ""), m.turn_id
            else:
                assert final.startswith(streamed.get(m.turn_id or "", "")), m.turn_id


def test_a_round_followed_resumed_and_stopped_through_nginx(setup: Setup) -> None:
    wait_for(lambda: not setup.runners(), 120)  # none left by an earlier test
    with setup.client() as client:
        body = start_round(client, "My brother wants to sell our parents' house")
        sid, url = body["session_id"], body["events_url"]
    runner = setup.runners()
    # Watched until the second turn streams, then dropped; resumed with Last-Event-ID.
    first = watch(
        setup,
        url,
        lambda m: (
            ended(m) or (m.type == "agent_processing_update" and m.data["agent_id"] == "Persona")
        ),
    )
    assert first.seen and first.seen[-1].type == "agent_processing_update", diagnosis(
        setup, [first], runner
    )
    rest, viewers = follow(setup, url, runner, after=first.seen[-1].id)
    everything = first.seen + rest
    # (Not always the next id: the deltas a resumed stream catches up on come merged, each
    # message with the id of the last delta in it. No gap is in their text.)
    assert rest[0].id > first.seen[-1].id
    assert_whole_round(everything)
    assert_no_gap(everything)
    print(
        f"\nround on {runner}; viewers on {[setup.served_by(v.marker) for v in [first, *viewers]]}"
    )

    # The session's next round, stopped by another request while it is watched.
    with setup.client() as client:
        start_round(client, "My brother wants to sell our parents' house", session_id=sid)
    runner = setup.runners()
    stopped: list[bool] = []
    stop_seen: list[str] = []

    def stop_once(msg: Msg) -> None:
        if not stopped and msg.type == "agent_processing_update":
            marker = setup.marker()
            with setup.client() as other:
                response = other.post(f"/api/sessions/{sid}/stop?{marker}")
            assert response.status_code == 200, response.text
            stopped.append(response.json()["stopped"])
            wait_for(lambda: setup.served_by(marker), 10)
            stop_seen.append(f"stop served by {setup.served_by(marker)}: {response.text}")

    second, viewers = follow(setup, url, runner, on_event=stop_once, after=everything[-1].id)
    assert stopped == [True], f"{stop_seen}\n{diagnosis(setup, viewers, runner)}"
    assert second[0].id == everything[-1].id + 1
    assert_no_gap(second)
    complete = next(m for m in second if m.type == "round_complete")
    assert complete.data["status"] == "cancelled", complete.data


def test_a_worker_killed_mid_round_is_ended_through_the_stream(setup: Setup) -> None:
    wait_for(lambda: not setup.runners(), 120)  # none left by an earlier test
    with setup.client() as client:
        body = start_round(client, "The landlord wants us out by May")
        sid, url = body["session_id"], body["events_url"]
    wait_for(setup.runners, 30)
    (runner,) = setup.runners()
    victim = next(w for w in setup.workers if w.name == runner)
    killed: list[float] = []

    def kill_mid_turn(msg: Msg) -> None:
        if (
            not killed
            and msg.type == "agent_processing_update"
            and msg.data["agent_id"] == "Persona"
        ):
            assert victim.process is not None
            kill_server(victim.process)  # kill -9: nothing saved, no goodbye
            killed.append(time.monotonic())

    try:
        seen, viewers = follow(setup, url, [runner], on_event=kill_mid_turn)
        assert killed, diagnosis(setup, viewers, [runner])
        noticed = time.monotonic() - killed[0]
        print(
            f"\nkilled {runner}; the round ended on the stream {noticed:.1f} s after"
            f" (viewers on {[setup.served_by(v.marker) for v in viewers]})"
        )
        assert_no_gap(seen)
        started = [m.turn_id for m in seen if m.type == "agent_processing_started"]
        completed = [m.turn_id for m in seen if m.type == "agent_processing_complete"]
        assert started == completed and len(started) == 2, "nothing ran twice"
        cut = [m for m in seen if m.type == "agent_processing_complete"][1]
        assert cut.data["metadata"]["error_class"] == "WorkerLost"
        assert cut.data["final_content"].startswith(texts(seen)[cut.turn_id or ""])
        complete = next(m for m in seen if m.type == "round_complete")
        assert complete.data["status"] == "cancelled"
        assert "worker running it stopped" in complete.data["reason"]
        with setup.client() as client:
            stored = client.get(f"/api/sessions/{sid}").json()
        assert stored["rounds"][-1]["status"] == "cancelled"
    finally:
        # systemd starts it again (Restart=on-failure): the same command, the same port.
        victim.start()
    with victim.client() as client:
        assert client.get("/healthz").json()["status"] == "ok"


def test_a_rolling_restart_keeps_serving(setup: Setup) -> None:
    """As docs/scaling.md restarts the workers: one after another (SIGTERM, as systemctl
    restart sends, then the same command), each back before the next; nginx passes every
    request meanwhile to a worker that is up. The first restarted runs a round, followed
    through nginx to its end."""
    wait_for(lambda: not setup.runners(), 120)  # none left by an earlier test
    with setup.client() as client:
        body = start_round(client, "My best friend is moving abroad")
    wait_for(setup.runners, 30)
    (runner,) = setup.runners()
    order = sorted(setup.workers, key=lambda w: w.name != runner)
    restarted: list[str] = []

    def restart(worker: Worker) -> None:
        worker.stop()
        with setup.client() as client:
            for _ in range(2 * len(setup.workers)):
                answer = client.get("/api/sessions")
                assert answer.status_code == 200, (worker.name, setup.nginx.errors[-3000:])
        worker.start()
        with worker.client() as client:
            assert client.get("/healthz").json()["status"] == "ok"
        # nginx left the worker out when it could not reach it (for fail_timeout, 10 s):
        # the next one is restarted once nginx sends requests to this one again.
        wait_for(lambda: worker.name in whoami_served_by(setup), 60)
        restarted.append(worker.name)

    def restart_mid_turn(msg: Msg) -> None:
        if not restarted and msg.type == "agent_processing_update":
            restart(order[0])

    seen, viewers = follow(setup, body["events_url"], [runner], on_event=restart_mid_turn)
    assert restarted == [runner], diagnosis(setup, viewers, [runner])
    assert_no_gap(seen)
    complete = next(m for m in seen if m.type == "round_complete")
    print(
        f"\nrestarted {runner} while it ran a round: the round ended"
        f" {complete.data['status']!r} ({complete.data.get('reason')!r});"
        f" viewers on {[setup.served_by(v.marker) for v in viewers]}"
    )
    for worker in order[1:]:
        restart(worker)
