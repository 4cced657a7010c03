"""A lean SSE load client, run as a separate process by the benchmark.

It opens ``--clients`` streams to one URL over raw asyncio sockets (HTTP/1.1, chunked), parses
the SSE messages, and prints one JSON line of results: per-event delays (receive time minus the
payload's ``timestamp``), counts, bytes and timings. A raw client keeps the load generator's CPU
small next to the server's, on a machine with only two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime
from urllib.parse import urlsplit

import uvloop


class Stats:
    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0
        self.delays_ms: list[float] = []
        self.first_event_s: list[float] = []
        self.errors = 0
        self.connected = 0
        self.last_id = 0
        self.last_ids: list[int] = []


async def _read_chunked(reader: asyncio.StreamReader):  # type: ignore[no-untyped-def]
    """The bodies of an HTTP/1.1 chunked response, decoded from whatever the socket has:
    one read per arrival, not three awaits per chunk (the client's CPU is the bench's, on
    the same cores as the server's)."""
    pending = b""
    while data := await reader.read(65536):
        pending += data
        bodies = []
        while (eol := pending.find(b"\r\n")) >= 0:
            size = int(pending[:eol].split(b";")[0].strip() or b"0", 16)
            if size == 0:
                if bodies:
                    yield b"".join(bodies)
                return
            end = eol + 2 + size
            if len(pending) < end + 2:
                break
            bodies.append(pending[eol + 2 : end])
            pending = pending[end + 2 :]
        if bodies:
            yield b"".join(bodies)


async def start_round(url: str, body: bytes) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"POST /api/rounds HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(request.encode() + body)
    response = await reader.read()
    writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    if b" 202 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"could not start a round: {head[:80]!r}")
    return str(json.loads(payload)["session_id"])


async def one_client(
    url: str,
    method: str,
    body: bytes,
    stats: Stats,
    until: str | None,
    stop_at: float,
    ready: asyncio.Event,
    sample_every: int,
    watch_event: str | None,
    until_id: int = 0,
    start_body: bytes = b"",
    stop_after: bool = False,
) -> None:
    started = time.perf_counter()
    if start_body:
        # Two steps: start a round through the JSON API, then follow the session at ``url``
        # (which names it as ``{session_id}``).
        url = url.format(session_id=await start_round(url, start_body))
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        stats.errors += 1
        return
    headers = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Accept: text/event-stream",
        "Connection: keep-alive",
    ]
    if body:
        headers += [
            "Content-Type: application/x-www-form-urlencoded",
            f"Content-Length: {len(body)}",
        ]
    writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + body)
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        stats.errors += 1
        writer.close()
        return
    chunked = False
    session_id = ""
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        lowered = line.lower()
        if lowered.startswith(b"transfer-encoding:") and b"chunked" in lowered:
            chunked = True
        elif lowered.startswith(b"x-session-id:"):
            session_id = line.split(b":", 1)[1].strip().decode()
    stats.connected += 1
    ready.set()
    buffer = b""
    count = 0
    my_last = 0
    got_first = False

    async def chunks():  # type: ignore[no-untyped-def]
        if chunked:
            async for data in _read_chunked(reader):
                yield data
        else:
            while data := await reader.read(65536):
                yield data

    try:
        async for data in chunks():
            now = time.time()
            stats.bytes += len(data)
            buffer += data
            while b"\n\n" in buffer:
                message, buffer = buffer.split(b"\n\n", 1)
                if message.startswith(b":"):
                    continue
                stats.events += 1
                count += 1
                stop = False
                name = None
                payload = None
                for field in message.split(b"\n"):
                    if field.startswith(b"id: "):
                        my_last = int(field[4:])
                        stats.last_id = max(stats.last_id, my_last)
                        if until_id and my_last >= until_id:
                            stop = True
                    elif field.startswith(b"event: "):
                        name = field[7:].decode()
                    elif field.startswith(b"data: ") and payload is None:
                        payload = field[6:]
                if not got_first and (watch_event is None or name == watch_event):
                    got_first = True
                    stats.first_event_s.append(time.perf_counter() - started)
                    if stop_after and session_id:
                        await stop_round(host, port, session_id)
                if sample_every and count % sample_every == 0 and payload:
                    # The payload's timestamp, found without parsing the JSON (cheap per event).
                    at = payload.find(b'"timestamp":"')
                    if at >= 0:
                        stamp = payload[at + 13 : payload.index(b'"', at + 13)].decode()
                        sent = datetime.fromisoformat(stamp).timestamp()
                        stats.delays_ms.append((now - sent) * 1000)
                if stop or (until is not None and name == until):
                    return
            if time.time() > stop_at:
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        stats.errors += 1
    finally:
        stats.last_ids.append(my_last)
        writer.close()


async def stop_round(host: str, port: int, session_id: str) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"POST /api/sessions/{session_id}/stop HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )
    await reader.read()
    writer.close()


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    stats = Stats()
    body = args.body.encode() if args.body else b""
    stop_at = time.time() + args.duration
    readies = [asyncio.Event() for _ in range(args.clients)]
    sem = asyncio.Semaphore(args.concurrency or args.clients)

    async def guarded(i: int) -> None:
        async with sem:
            await one_client(
                args.url,
                args.method,
                body,
                stats,
                args.until,
                stop_at,
                readies[i],
                args.sample_every,
                args.watch_event,
                args.until_id,
                args.start.encode(),
                args.stop_after,
            )

    started = time.perf_counter()
    tasks = []
    for i in range(args.clients):
        tasks.append(asyncio.create_task(guarded(i)))
        if args.ramp and i % 50 == 49:
            await asyncio.sleep(0)  # let the accept queue drain when opening many sockets
    if args.signal_ready:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), args.duration)
        print(json.dumps({"ready": stats.connected}), flush=True)
        if args.hold:
            # Idle clients: hold the connections until told to stop (stdin closes).
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            for t in tasks:
                t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "events": stats.events,
        "bytes": stats.bytes,
        "errors": stats.errors,
        "connected": stats.connected,
        "last_id": stats.last_id,
        "last_ids": stats.last_ids if args.per_client else [],
        "delays_ms": stats.delays_ms,
        "first_event_s": stats.first_event_s,
        "elapsed_s": time.perf_counter() - started,
        "cpu_s": time.process_time(),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=0)
    p.add_argument("--method", default="GET")
    p.add_argument("--body", default="")
    p.add_argument("--until", default=None, help="stop a stream at this event name")
    p.add_argument("--until-id", type=int, default=0, help="stop a stream at this event id")
    p.add_argument(
        "--stop-after",
        action="store_true",
        help="stop the round (X-Session-Id) once the watched event arrives",
    )
    p.add_argument("--per-client", action="store_true", help="report each client's last id")
    p.add_argument("--start", default="", help="form body of a round to start first")
    p.add_argument("--watch-event", default=None, help="time to the first event of this name")
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--sample-every", type=int, default=1)
    p.add_argument("--signal-ready", action="store_true")
    p.add_argument("--hold", action="store_true")
    p.add_argument("--ramp", action="store_true")
    args = p.parse_args()
    # On uvloop, as the server runs: the clients' share of the two cores stays small.
    uvloop.run(report(args))


async def report(args: argparse.Namespace) -> None:
    result = await main_async(args)
    # Printed while the loop still runs: once uvloop's loop has closed, a line longer than
    # the pipe's buffer came out cut at 64 KiB.
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
