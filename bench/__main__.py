"""``make bench``: the stream path measured against bare sse-starlette, in one run.

Every server runs as its own uvicorn process on a free loopback port; every load comes from
``bench.loadclient`` processes, so the figures are what a client on this machine sees. The
report is a set of Markdown tables on stdout (and in ``--out FILE``).

    python -m bench [--only throughput,fanout,rounds,first,idle,startup,memory,hotpath,llm,
                           scaling] [--out FILE]
    python -m bench hotpath            # one measurement alone (or several, comma-separated)
    python -m bench.scaling --sizes 1000 --rounds 0 --topologies split   # a part of one
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import Report, machine
from bench.fanout import fanout
from bench.first_event import first_event
from bench.hotpath import hotpath
from bench.idle import idle
from bench.llm_chunks import llm_chunks
from bench.memory import memory
from bench.rounds import many_rounds
from bench.scaling import scaling
from bench.startup import startup
from bench.throughput import throughput

MEASUREMENTS = {
    "throughput": throughput,
    "fanout": fanout,
    "rounds": many_rounds,
    "first": first_event,
    "idle": idle,
    "startup": startup,
    "memory": memory,
    "hotpath": hotpath,
    "llm": llm_chunks,
    "scaling": scaling,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated names")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("names", nargs="?", help="as --only")
    args = parser.parse_args()
    names = [n.strip() for n in (args.names or args.only).split(",") if n.strip()]
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
