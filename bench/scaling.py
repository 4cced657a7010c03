"""7. Scaling: fan-out at 1,000 and 5,000 viewers, and 50 concurrent rounds, on one process
and on two workers behind Redis.

Three topologies, each started afresh on loopback:

- ``one``: one ``psyche-sse serve`` process, both roles, the in-memory bus (no Redis);
- ``both2``: two workers, both roles, sharing a ``redis-server`` (``tests.redis_server``) and
  the database; viewers split over the two, rounds started on the first (fan-out) or on
  both (many rounds);
- ``split``: a ``deliver`` worker (viewers, requests) and a ``generate`` worker (the rounds,
  taken from the queue in Redis);
- ``split3``: two ``deliver`` workers, the viewers split over the two, and a ``generate``
  worker.

Fan-out: one round of the offline model at 50 tokens/s, watched by N viewers spread over the
load-client processes (``bench.loadclient`` via ``Crowd``). Every measured round is the
second of a fresh session with the same seed, so the watched and unwatched rounds say the
same words; the generation time is the round's ``duration_ms`` in the store.

Many rounds: 50 concurrent rounds (the same seed each), each followed by the client that
starts it (``POST /api/rounds`` as a stream); CPU per delta event and per token, the rounds'
durations.

CPU: every server process's, and Redis's, from ``/proc/PID/stat`` over the measured round;
the load clients' the same way (they run on the same two cores); the whole machine's from
``/proc/stat`` (other work on the machine included).

    python -m bench scaling               # fan-out, then many rounds, all three topologies
    python -m bench.scaling --sizes 20,50 --rounds 4 --topologies one,split   # smaller
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.web.sse import Msg, follow_round
from tests.workers import workers

from bench.common import (
    SITUATION,
    Crowd,
    Report,
    cpu_seconds,
    load_rounds,
    pct,
    request,
    wait_until,
)
from bench.serving import server

TPS = "50"
SEED = 7
MAX_CONNECTIONS = "12000"
SIZES = (1000, 5000)
ROUNDS = 50

TOPOLOGIES: dict[str, tuple[str, list[str] | None]] = {
    "one": ("one process (both roles, no Redis)", None),
    "both2": ("two workers, both roles, Redis", ["both", "both"]),
    "split": ("deliver + generate, Redis", ["deliver", "generate"]),
    "split3": ("two deliver + generate, Redis", ["deliver", "deliver", "generate"]),
}


@dataclass
class Topology:
    name: str
    front: int  # the port rounds are started at (and their first follower reads)
    viewers: list[str]  # base URLs the viewers are spread over
    pids: dict[str, int]  # every server process (and Redis) by label
    rounds_at: list[int] = field(default_factory=list)  # ports many rounds are started at
    logs: list[list[str]] = field(default_factory=list)  # the workers' log lines, as they come

    def warnings(self) -> list[str]:
        """The workers' log lines at WARNING and above (a round ended for a worker taken for
        stopped, a lease lost): none should be, here."""
        return [
            line
            for lines in self.logs
            for line in lines
            if any(level in line for level in ("WARNING", "ERROR", "CRITICAL"))
        ]


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_busy() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, from ``/proc/stat``."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


@contextlib.contextmanager
def topology(name: str) -> Iterator[Topology]:
    """The topology ``name`` of :data:`TOPOLOGIES`, up and warm (LiteLLM loaded everywhere)."""
    title, roles = TOPOLOGIES[name]
    if roles is None:
        with server(PSYCHE_OFFLINE_TPS=TPS, PSYCHE_MAX_CONNECTIONS=MAX_CONNECTIONS) as srv:
            yield Topology(title, srv.port, [srv.url("")], {"server": srv.pid}, [srv.port])
        return
    with (
        tempfile.TemporaryDirectory(prefix="psyche-bench-") as tmp,
        workers(
            Path(tmp), len(roles), roles=roles, offline_tps=TPS, max_connections=MAX_CONNECTIONS
        ) as cluster,
    ):
        pids = {
            f"{role} {i + 1}": w.pid for i, (role, w) in enumerate(zip(roles, cluster, strict=True))
        }
        assert cluster.redis.process is not None
        pids["redis"] = cluster.redis.process.pid
        serving = [w for role, w in zip(roles, cluster, strict=True) if role != "generate"]
        yield Topology(
            title,
            serving[0].port,
            [w.url for w in serving],
            pids,
            [w.port for w in serving],
            [w.lines for w in cluster],
        )


# --- one round, and the session it is the second of -----------------------------------------


def start(port: int, session_id: str | None = None) -> str:
    fields: dict[str, Any] = {"situation": SITUATION, "seed": SEED}
    if session_id:
        fields["session_id"] = session_id
    status, body = request(port, "POST", "/api/rounds", fields)
    assert status == 202, body
    return str(body["session_id"])


def session(port: int, sid: str) -> dict[str, Any]:
    status, body = request(port, "GET", f"/api/sessions/{sid}")
    assert status == 200, body
    return dict(body)


def finished(port: int, sid: str) -> dict[str, Any]:
    """The session once its round has ended (stored)."""
    state: dict[str, Any] = {}

    def over() -> bool:
        state.update(session(port, sid))
        rounds = state["rounds"]
        return not state["running"] and bool(rounds) and rounds[-1]["status"] != "running"

    wait_until(over, 300, "the round to end", every=0.05)
    return state


def prepared(top: Topology, count: int) -> list[tuple[str, int]]:
    """``count`` sessions with one round done (the same seed, all at once): (id, last id).

    The last id is the stream's: the ``last_event_id`` of ``GET /api/sessions/{id}`` from
    a worker that did not run the round is the store's reservation mark instead, ahead of
    the ids, and viewers who start there get the stored history, not the live round.
    """
    sids = [start(top.front) for _ in range(count)]
    for sid in sids:
        finished(top.front, sid)
    return [(sid, _replay(top.viewers[0], sid)[-1].id) for sid in sids]


def tokens(state: dict[str, Any]) -> int:
    return sum(
        int((t.get("usage") or {}).get("completion_tokens") or 0)
        for t in state["rounds"][-1]["turns"]
    )


# --- CPU over an interval ----------------------------------------------------------------------


class Cpu:
    """CPU seconds of named processes, and of the machine, between :meth:`start` and
    :meth:`stop`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.cpu0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self.busy0, self.all0 = machine_busy()

    def stop(self) -> None:
        self.elapsed = time.perf_counter() - self.t0
        self.used = {k: cpu_seconds(p) - self.cpu0[k] for k, p in self.pids.items()}
        busy, every = machine_busy()
        self.machine = busy - self.busy0
        self.cores = (every - self.all0) / self.elapsed  # the machine's cores, as measured


def share(seconds: float, elapsed: float) -> str:
    return f"{100 * seconds / elapsed:.0f}%"


# --- fan-out -------------------------------------------------------------------------------------


def fanout(top: Topology, sizes: Sequence[int]) -> list[list[Any]]:
    """Rows: the round watched by one viewer (the unwatched time), then one per size."""
    sizes = [1, *sizes]
    sessions = prepared(top, len(sizes))
    rows = []
    cpu = Cpu(top.pids)
    alone_ms = 0
    for n, (sid, last) in zip(sizes, sessions, strict=True):
        urls = [f"{base}/api/sessions/{sid}/events?after={last}" for base in top.viewers]
        crowd = Crowd(urls, n, "--until", "round_complete", "--duration", 300)
        clients0 = sum(cpu_seconds(p.pid) for p in crowd.procs)
        avg = load_avg()
        cpu.start()
        start(top.front, sid)
        results = crowd.results()
        cpu.stop()
        state = finished(top.front, sid)
        clients = sum(r["cpu_s"] for r in results) - clients0
        delays = [d for r in results for d in r["delays_ms"]]
        generation_ms = int(state["rounds"][-1]["duration_ms"])
        alone_ms = alone_ms or generation_ms
        servers = sum(s for k, s in cpu.used.items() if k != "redis")
        rows.append(
            [
                top.name,
                n,
                crowd.connected,
                pct(delays, 50),
                pct(delays, 99),
                max(delays, default=float("nan")),
                sum(r["events"] for r in results) / max(crowd.connected, 1) / cpu.elapsed,
                1e6 * servers / max(sum(r["events"] for r in results), 1),
                generation_ms,
                generation_ms / alone_ms,
                share(servers, cpu.elapsed),
                share(cpu.used.get("redis", 0), cpu.elapsed),
                _per_process(cpu),
                share(clients, cpu.elapsed),
                share(cpu.machine, cpu.elapsed),
                sum(r["errors"] for r in results),
                avg,
            ]
        )
    return rows


def _per_process(cpu: Cpu) -> str:
    return ", ".join(f"{k} {share(s, cpu.elapsed)}" for k, s in cpu.used.items() if k != "redis")


FANOUT_HEAD = [
    "topology",
    "viewers",
    "connected",
    "p50 ms",
    "p99 ms",
    "max ms",
    "messages/s a viewer",
    "servers' µs/message",
    "generation ms",
    "ratio to 1 viewer",
    "servers' CPU",
    "Redis CPU",
    "each server",
    "load clients' CPU",
    "machine CPU",
    "errors",
    "load avg",
]

FANOUT_NOTE = (
    "One round at 50 tokens/s (offline model, seed 7, the second round of a fresh session "
    "each time), watched by N viewers in up to 4 load-client processes (split over the "
    "serving workers); the round watched by 1 viewer stands for unwatched. Delay: a "
    "message's arrival minus its payload's timestamp (set when the event is published). "
    "Generation: the round's `duration_ms` in the store. CPU, as a "
    "share of one core over the round (from starting it to the last viewer's "
    "`round_complete`): the server processes' (`/proc/PID/stat`), Redis's, the load clients' "
    "(same two cores), and the whole machine's (`/proc/stat`, 200% = both cores, other work "
    "included); servers' µs/message: their CPU over the messages the viewers got. Load "
    "average (1, 5, 15 min) when the viewers had connected."
)


# --- many rounds ---------------------------------------------------------------------------------


def many_rounds(top: Topology, n: int) -> list[Any]:
    # One round alone first (also warms every worker that takes rounds): the events and tokens
    # of a round of this seed, and its generation time unwatched.
    sid = start(top.rounds_at[0])
    alone = finished(top.rounds_at[0], sid)
    alone_ms = int(alone["rounds"][-1]["duration_ms"])
    deltas_each, _ = _deltas(top.viewers[0], sid)
    for port in top.rounds_at[1:]:
        finished(port, start(port))
    before = _sessions(top.front)
    body = urlencode({"situation": SITUATION, "seed": SEED})
    results: list[dict[str, Any]] = []
    per = [
        n // len(top.rounds_at) + (i < n % len(top.rounds_at)) for i in range(len(top.rounds_at))
    ]

    def run(port: int, count: int) -> None:
        results.append(
            load_rounds(
                f"http://127.0.0.1:{port}/api/rounds",
                count,
                body,
                "--watch-event",
                "round_complete",
            )
        )

    avg = load_avg()
    cpu = Cpu(top.pids)
    cpu.start()
    threads = [
        threading.Thread(target=run, args=(port, count))
        for port, count in zip(top.rounds_at, per, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu.stop()
    new = _sessions(top.front) - before
    states = [finished(top.front, s) for s in new]
    durations = [int(s["rounds"][-1]["duration_ms"]) for s in states]
    tokens_all = sum(tokens(s) for s in states)
    deltas = sum(_deltas(top.viewers[i % len(top.viewers)], s)[0] for i, s in enumerate(new))
    servers = sum(s for k, s in cpu.used.items() if k != "redis")
    redis = cpu.used.get("redis", 0.0)
    walls = [1000 * w for r in results for w in r["first_event_s"]]
    delays = [d for r in results for d in r["delays_ms"]]
    return [
        top.name,
        len(states),
        deltas,
        "yes" if deltas == n * deltas_each else f"no ({n} x {deltas_each})",
        deltas / cpu.elapsed,
        pct(delays, 50),
        pct(delays, 99),
        alone_ms,
        statistics.median(durations) if durations else float("nan"),
        max(durations, default=0),
        pct(walls, 50),
        max(walls, default=float("nan")),
        1e6 * servers / deltas,
        1e6 * (servers + redis) / deltas,
        1e6 * (servers + redis) / max(tokens_all, 1),
        _per_process(cpu) + (f", redis {share(redis, cpu.elapsed)}" if "redis" in cpu.used else ""),
        share(sum(r["cpu_s"] for r in results), cpu.elapsed),
        share(cpu.machine, cpu.elapsed),
        sum(r["errors"] for r in results),
        avg,
    ]


def _deltas(base: str, sid: str) -> tuple[int, int]:
    """(delta events, other events) of a session with one finished round: its ids are dense,
    and its replay sends every event but the deltas as a message of its own (a turn's deltas
    go merged, under the newest one's id)."""
    msgs = _replay(base, sid)
    others = sum(1 for m in msgs if m.type != "agent_processing_update")
    return msgs[-1].id - msgs[0].id + 1 - others, others


def _replay(base: str, sid: str) -> list[Msg]:
    """A session's stream from its start to its round's end."""
    import httpx

    with httpx.Client(base_url=base, timeout=60) as client:
        return follow_round(client, f"/api/sessions/{sid}/events?after=0")


def _sessions(port: int) -> set[str]:
    _, body = request(port, "GET", "/api/sessions?limit=100")
    return {str(r["id"]) for r in body["sessions"]}


ROUNDS_HEAD = [
    "topology",
    "rounds",
    "deltas",
    "deltas as expected",
    "deltas/s",
    "p50 ms",
    "p99 ms",
    "one round alone, ms",
    "generation p50 ms",
    "generation max ms",
    "wall p50 ms",
    "wall max ms",
    "servers' µs/delta",
    "with Redis µs/delta",
    "with Redis µs/token",
    "CPU by process",
    "load client's CPU",
    "machine CPU",
    "errors",
    "load avg",
]

ROUNDS_NOTE = (
    "N rounds at 50 tokens/s started at once (seed 7, each a new session), each followed by "
    "the client that starts it (`POST /api/rounds` as a stream); with two serving workers, "
    "half at each. Deltas: every session's delta events, from its replay after the run (as "
    "expected: N times one round's alone, the same seed). Generation: the rounds' "
    "`duration_ms` in the store; wall: the client's POST to its `round_complete`. CPU per "
    "delta: the server processes' CPU over the run (and with Redis's); per token: with "
    "Redis's, over the turns' `completion_tokens`. Shares of one core over the run."
)


# --- the measurement -----------------------------------------------------------------------------


def _progress(rows: list[list[Any]]) -> None:
    """The rows so far, on stderr: what a run that fails later leaves."""
    print(" | ".join(str(c) for c in rows[-1]) if rows else "", file=sys.stderr, flush=True)


def measure(
    report: Report,
    sizes: Sequence[int] = SIZES,
    rounds: int = ROUNDS,
    names: Sequence[str] = tuple(TOPOLOGIES),
) -> None:
    fan_rows: list[list[Any]] = []
    round_rows: list[list[Any]] = []
    for name in names:
        with topology(name) as top:
            if sizes:
                try:
                    fan_rows += fanout(top, sizes)
                except (OSError, RuntimeError, TimeoutError) as exc:
                    fan_rows.append([top.name, "failed:", repr(exc)[:200]])
                _progress(fan_rows)
            if rounds:
                try:
                    round_rows.append(many_rounds(top, rounds))
                except (OSError, RuntimeError, TimeoutError) as exc:
                    round_rows.append([top.name, "failed:", repr(exc)[:200]])
                _progress(round_rows)
            for line in top.warnings():
                print(f"{top.name}: {line}", end="", file=sys.stderr)
    if fan_rows:
        report.table(
            "7. Fan-out on one process and on two workers behind Redis",
            FANOUT_HEAD,
            fan_rows,
            FANOUT_NOTE,
        )
        for row in fan_rows:
            if len(row) == len(FANOUT_HEAD):
                report.figures[f"scaling_{row[0]}_{row[1]}_p99_ms"] = row[4]
    if round_rows:
        report.table(
            f"7b. {rounds} concurrent rounds on one process and on two workers",
            ROUNDS_HEAD,
            round_rows,
            ROUNDS_NOTE,
        )


def scaling(report: Report) -> None:
    measure(report)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="viewers; '' none")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="concurrent rounds; 0 none")
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES))
    parser.add_argument("--out", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    names = [t for t in args.topologies.split(",") if t]
    unknown = set(names) - set(TOPOLOGIES)
    if unknown:
        parser.error(f"unknown topology: {', '.join(sorted(unknown))}")
    report = Report()
    measure(report, [int(s) for s in args.sizes.split(",") if s], args.rounds, names)
    if args.out:
        args.out.write_text("\n".join(report.sections))


if __name__ == "__main__":
    main()
