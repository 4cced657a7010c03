"""Slow and idle clients against the real server: raw sockets that never finish their
headers are dropped in bounded time; event streams, once their headers are in, are not;
past ``max_connections`` a request gets a 503."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.live import LiveServer, serve_in_thread, stop_server
from tests.web.sse import finished_session

HEADER_TIMEOUT = 0.5
# The time the server may take past its deadline before the test calls it stuck.
SLACK = 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = serve_in_thread(
        tmp_path_factory.mktemp("limits"),
        offline_tps="0",
        heartbeat="0.2",
        header_timeout=str(HEADER_TIMEOUT),
        keep_alive_timeout="1",
    )
    yield server
    stop_server(server)


def connect(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=HEADER_TIMEOUT + SLACK)
    return sock


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a ``Content-Length``, however the bytes arrive."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    length = int(lengths[0].split(b":", 1)[1])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    assert len(body) == length, "more bytes than the response"
    return head


def closed_after(sock: socket.socket, began: float) -> float:
    """Seconds from ``began`` until the server closed the connection (recv gives b"");
    socket.timeout (a failure) when it does not within the socket's timeout."""
    while sock.recv(65536):
        pass
    return time.monotonic() - began


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connects, says nothing
        b"GET / HTTP/1.1\r\n",  # a request line, then nothing
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Never: end",  # headers never ended
    ],
)
def test_unfinished_headers_are_dropped(server: LiveServer, sent: bytes) -> None:
    with connect(server) as sock:
        began = time.monotonic()
        sock.sendall(sent)
        took = closed_after(sock, began)
    assert HEADER_TIMEOUT * 0.8 <= took < HEADER_TIMEOUT + SLACK


def test_headers_sent_a_byte_at_a_time_are_dropped(server: LiveServer) -> None:
    """Each byte would restart a timer that only measured silence; the deadline does not."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 200
    with connect(server) as sock:
        began = time.monotonic()
        sent = 0
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.02)  # the client's pace, not a wait for the server
        except (BrokenPipeError, ConnectionResetError):
            pass
        took = closed_after(sock, began)
    assert sent < len(request)
    assert took < HEADER_TIMEOUT + SLACK


def test_a_request_after_an_idle_keep_alive_is_answered_then_the_idle_one_dropped(
    server: LiveServer,
) -> None:
    with connect(server) as sock:
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200 OK")
        sock.sendall(request)  # the same connection, a second request
        assert read_response(sock).startswith(b"HTTP/1.1 200 OK")
        began = time.monotonic()
        took = closed_after(sock, began)  # then idle: closed at keep-alive or the deadline
    assert took < 1 + SLACK


def test_an_event_stream_outlives_the_header_deadline(server: LiveServer) -> None:
    with server.client() as client:
        sid = finished_session(client, "A long look")
        last = client.get(f"/api/sessions/{sid}").json()["last_event_id"]
        with client.stream("GET", f"/api/sessions/{sid}/events?after={last}") as response:
            began = time.monotonic()
            beats = 0
            for line in response.iter_lines():
                beats += line == ": heartbeat"
                if time.monotonic() - began > 4 * HEADER_TIMEOUT:
                    break
    assert beats >= 3


def test_past_max_connections_a_request_gets_a_503(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A server of its own: a stream another test left may count until the server notices.
    server = serve_in_thread(
        tmp_path_factory.mktemp("crowded"), offline_tps="0", max_connections="3"
    )
    viewers = [server.client() for _ in range(2)]
    try:
        with server.client() as client:
            sid = finished_session(client, "Crowded")
        streams = [c.stream("GET", f"/api/sessions/{sid}/events") for c in viewers]
        for stream in streams:
            assert stream.__enter__().status_code == 200
        with server.client() as client:
            assert client.get("/healthz").status_code == 503  # a third connection: too many
        for stream in streams:
            stream.__exit__(None, None, None)
    finally:
        for c in viewers:
            c.close()
        stop_server(server)
