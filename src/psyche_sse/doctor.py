"""``psyche-sse doctor URL``: whether anything between a client and a deployment buffers the
event stream.

It asks for ``/healthz``, starts one short round, reads the round's stream as it arrives and
compares when each event arrived with when the server sent it (the events' own
``timestamp``). Only differences are compared, arrivals with arrivals and timestamps with
timestamps, so the two machines' clocks need not agree. A proxy that buffers holds the early
events back until later ones come: each event's delay (arrival minus timestamp) then
differs from the others' by up to the whole round, where a live stream's differ by a
network's jitter.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
from httpx_sse import EventSource

from . import __version__

EXIT_LIVE = 0
EXIT_BUFFERED = 1

SITUATION = "A short check of the live stream: is anything holding my words back?"
ROUND_TIMEOUT = 300.0
"""Seconds the whole round may take, from the request to its last event."""
# A live stream's events differ in delay by a network's jitter; beyond the larger of these
# (seconds, and share of the round's length) something held them back.
HELD_BACK_FLOOR = 0.5
HELD_BACK_SHARE = 0.2
TOO_SHORT = 2.0
"""A round sent over fewer seconds says little: even a buffered one arrives within it."""
_TIMEOUT = httpx.Timeout(15.0, read=60.0)  # a stream's heartbeat comes every 15 s

FIXES = (
    (
        "nginx",
        "`proxy_buffering off;` in the location that passes to psyche-sse, no gzip for "
        "text/event-stream, and no `proxy_ignore_headers X-Accel-Buffering` (the server "
        "sends `X-Accel-Buffering: no`)",
    ),
    ("Caddy", "`flush_interval -1` in the reverse_proxy block"),
    (
        "Cloudflare and other CDNs",
        "no compression or transformation of text/event-stream, and a rule that bypasses "
        "the cache for /api/ and /s/",
    ),
)


class Unreachable(Exception):
    """No answer worth measuring: a bad URL, no server, a refused token. One line."""


@dataclass(frozen=True)
class Arrival:
    """An event: when it arrived (``time.monotonic()``) and when it was sent (its
    ``timestamp``, seconds since the epoch on the server's clock)."""

    at: float
    sent: float


@dataclass(frozen=True)
class Measure:
    """A round's stream as it arrived."""

    first_event_s: float  # from the request to the first event
    events: int
    sent_span: float  # from the first event's timestamp to the last one's
    arrival_span: float  # from the first event's arrival to the last one's
    held_back: float  # how much more one event was delayed than the least delayed one

    @classmethod
    def of(cls, requested: float, arrivals: list[Arrival]) -> Measure:
        delays = [a.at - a.sent for a in arrivals]
        return cls(
            first_event_s=arrivals[0].at - requested,
            events=len(arrivals),
            sent_span=max(a.sent for a in arrivals) - min(a.sent for a in arrivals),
            arrival_span=arrivals[-1].at - arrivals[0].at,
            held_back=max(delays) - min(delays),
        )

    @property
    def buffered(self) -> bool:
        return self.held_back > max(HELD_BACK_FLOOR, HELD_BACK_SHARE * self.sent_span)


@dataclass
class Seen:
    """What the round's stream carried besides the timing."""

    session_id: str | None = None
    failed_turns: int = 0
    encoding: str | None = None
    ended: bool = False  # whether the stream reached the round's last event


def _base_url(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
        scheme, host = parts.scheme, parts.hostname
    except ValueError:
        scheme, host = "", None
    if scheme not in ("http", "https") or not host:
        raise Unreachable(f"{url!r} is not an http(s) URL, such as https://psyche.example.com")
    return url.strip().rstrip("/")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _refusal(response: httpx.Response, what: str, token: str | None) -> Unreachable:
    """The server's answer to ``what`` when it is not the one expected."""
    status = response.status_code
    if status in (401, 403):
        if token is None:
            return Unreachable(f"{what}: {status}, the server wants a token (--token)")
        return Unreachable(f"{what}: {status}, the token was refused")
    try:
        detail = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = response.reason_phrase
    return Unreachable(f"{what}: {status} {detail}")


def _health(client: httpx.Client, url: str, token: str | None) -> tuple[str, float]:
    """The server's version, and how long ``/healthz`` took to answer."""
    started = time.monotonic()
    try:
        response = client.get("/healthz")
    except httpx.HTTPError as exc:
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            hint = " (a certificate from your own authority: SSL_CERT_FILE=its-ca.pem)"
        raise Unreachable(f"cannot reach {url}: {_one_line(exc)}{hint}") from exc
    took = time.monotonic() - started
    if response.status_code == 404:
        raise Unreachable(f"no psyche-sse at {url}: GET /healthz answered 404")
    if response.status_code != 200:
        raise _refusal(response, "GET /healthz", token)
    try:
        body = response.json()
        return str(body["version"]), took
    except (ValueError, KeyError, TypeError):
        raise Unreachable(f"no psyche-sse at {url}: GET /healthz is not its answer") from None


def _sent_at(data: dict[str, Any]) -> float | None:
    stamp = data.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def _events(source: EventSource) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each event's type and data; ``("", {})`` for what is not an event (the ``retry``
    field, a heartbeat), so a reader sees time pass."""
    for sse in source.iter_sse():
        try:
            data = json.loads(sse.data) if sse.data else None
        except ValueError:
            data = None
        yield (sse.event, data) if isinstance(data, dict) else ("", {})


def _read_round(client: httpx.Client, token: str | None) -> tuple[float, list[Arrival], Seen]:
    """Start a round and read its stream to the end: when it was requested, each event's
    arrival, and what else the stream said."""
    seen = Seen()
    arrivals: list[Arrival] = []
    requested = time.monotonic()
    body = {"situation": SITUATION, "rounds": 1}
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    try:
        with client.stream("POST", "/api/rounds", json=body, headers=headers) as response:
            if response.status_code != 200:
                response.read()
                raise _refusal(response, "POST /api/rounds", token)
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                raise Unreachable(f"POST /api/rounds answered {kind or 'no content type'}")
            seen.encoding = response.headers.get("content-encoding")
            for event, data in _events(EventSource(response)):
                now = time.monotonic()
                if now - requested > ROUND_TIMEOUT:
                    raise Unreachable(f"the round did not end within {ROUND_TIMEOUT:.0f} s")
                if not event:
                    continue
                sent = _sent_at(data)
                if sent is not None:
                    arrivals.append(Arrival(now, sent))
                session_id = data.get("session_id")
                if isinstance(session_id, str) and session_id.isalnum():
                    seen.session_id = session_id
                metadata = data.get("metadata")
                failed = isinstance(metadata, dict) and metadata.get("status") == "error"
                if event == "agent_processing_complete" and failed:
                    seen.failed_turns += 1
                if event == "conversation_state":
                    seen.ended = True
                    break
    except httpx.HTTPError as exc:
        raise Unreachable(f"the round's stream broke off: {_one_line(exc)}") from exc
    if not arrivals:
        raise Unreachable("the round's stream ended without an event")
    return requested, arrivals, seen


def _delete(client: httpx.Client, session_id: str | None) -> bool:
    if session_id is None:
        return False
    try:
        return client.delete(f"/api/sessions/{session_id}").status_code == 204
    except httpx.HTTPError:
        return False


def report(measure: Measure, out: TextIO) -> None:
    """The figures and the verdict, with the fixes when the stream is buffered."""

    def line(label: str, text: str) -> None:
        print(f"{label + ':':<14}{text}", file=out)

    line("first event", f"{measure.first_event_s:.2f} s after the request")
    line(
        "events",
        f"{measure.events}, sent over {measure.sent_span:.2f} s, "
        f"arrived over {measure.arrival_span:.2f} s",
    )
    line("held back", f"{measure.held_back:.2f} s at most")
    if measure.buffered:
        line(
            "verdict",
            f"buffered: something between here and the server holds events back "
            f"(up to {measure.held_back:.1f} s of a {measure.sent_span:.1f} s round)",
        )
        for proxy, fix in FIXES:
            line("fix", f"{proxy}: {fix}")
    elif measure.sent_span < TOO_SHORT:
        line(
            "verdict",
            f"not buffered as far as a {measure.sent_span:.1f} s round shows "
            f"(a slower model would show more)",
        )
    else:
        line("verdict", "not buffered: events arrive as the server sends them")


def doctor(url: str, *, token: str | None = None, out: TextIO) -> int:
    """Check the deployment at ``url``; print the findings to ``out``. Returns
    :data:`EXIT_LIVE` or :data:`EXIT_BUFFERED`; raises :class:`Unreachable`."""
    base = _base_url(url)
    headers = {"User-Agent": f"psyche-sse-doctor/{__version__}"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(base_url=base, headers=headers, timeout=_TIMEOUT) as client:
        version, took = _health(client, base, token)
        print(
            f"{'reachable:':<14}{base}, psyche-sse {version} (/healthz in {took * 1000:.0f} ms)",
            file=out,
        )
        requested, arrivals, seen = _read_round(client, token)
        measure = Measure.of(requested, arrivals)
        report(measure, out)
        if seen.encoding:
            print(
                f"{'note:':<14}the stream came {seen.encoding}-encoded: the server never "
                f"compresses it, something between does (and may hold it back to do so)",
                file=out,
            )
        if not seen.ended:
            print(
                f"{'note:':<14}the stream ended before the round did: something between cut "
                f"it (a proxy's read timeout shorter than the round?)",
                file=out,
            )
        if seen.failed_turns:
            print(
                f"{'note:':<14}{seen.failed_turns} of the turns failed (see the server's log); "
                f"the stream's timing holds all the same",
                file=out,
            )
        if _delete(client, seen.session_id):
            print(f"{'cleaned up:':<14}the round's session was deleted", file=out)
    return EXIT_BUFFERED if measure.buffered else EXIT_LIVE
