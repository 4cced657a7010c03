"""``psyche-sse doctor URL`` against a live server: directly, through the documented nginx,
through an nginx that buffers the stream, and against nothing at all."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.live import LiveServer, serve_in_thread, stop_server
from tests.nginx import free_port, nginx_in_front

from psyche_sse.cli import main
from psyche_sse.doctor import Arrival, Measure

# How an nginx buffers an event stream by mistake: the server's X-Accel-Buffering ignored,
# and the stream compressed (which holds it back until a buffer fills, or the end).
BUFFERING = {
    "proxy_buffering off;": "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;",
    "gzip off;": "gzip on; gzip_types text/event-stream; gzip_min_length 0;",
}


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    code = main(["doctor", *args])
    out, err = capsys.readouterr()
    return Result(code, out, err)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """100 tokens a second: a round lasts a few seconds, long enough to see buffering."""
    live = serve_in_thread(tmp_path_factory.mktemp("doctor"), offline_tps="100")
    yield live
    stop_server(live)


def sessions(server: LiveServer) -> int:
    with server.client() as client:
        total: int = client.get("/api/sessions").json()["total"]
        return total


def test_a_direct_stream_is_not_buffered(
    server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sessions(server)
    result = doctor(capsys, server.url)
    assert result.code == 0, result.out + result.err
    assert "psyche-sse 0.1.0" in result.out
    assert "verdict:      not buffered" in result.out
    assert "fix:" not in result.out
    assert result.err == ""
    assert sessions(server) == before, "the round's session is deleted afterwards"


@pytest.mark.slow
def test_an_nginx_that_buffers_is_found_out_with_its_fix(
    server: LiveServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with nginx_in_front(tmp_path, server.url, tls=False, replacing=BUFFERING) as nginx:
        result = doctor(capsys, nginx.url)
    assert result.code == 1, result.out + result.err
    assert "verdict:      buffered" in result.out
    assert "proxy_buffering off;" in result.out
    assert "flush_interval -1" in result.out
    assert "gzip-encoded" in result.out


@pytest.mark.slow
def test_the_documented_nginx_is_not_buffered_and_the_token_is_sent(
    server: LiveServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """nginx as documented, with a door that only opens to ``Bearer right`` in front."""
    door = 'proxy_cache off;\n        if ($http_authorization != "Bearer right") { return 401; }'
    with nginx_in_front(
        tmp_path, server.url, tls=False, replacing={"proxy_cache off;": door}
    ) as nginx:
        without = doctor(capsys, nginx.url)
        wrong = doctor(capsys, nginx.url, "--token", "wrong")
        right = doctor(capsys, nginx.url, "--token", "right")
    assert (without.code, without.out) == (2, "")
    assert without.err == (
        "psyche-sse: error: GET /healthz: 401, the server wants a token (--token)\n"
    )
    assert (wrong.code, wrong.out) == (2, "")
    assert wrong.err == "psyche-sse: error: GET /healthz: 401, the token was refused\n"
    assert right.code == 0, right.out + right.err
    assert "verdict:      not buffered" in right.out


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("psyche.example.com", "is not an http(s) URL"),
        ("ftp://127.0.0.1/", "is not an http(s) URL"),
        ("http://", "is not an http(s) URL"),
        ("http://[::1", "is not an http(s) URL"),
        ("http://127.0.0.1:{closed}", "cannot reach http://127.0.0.1:"),
    ],
)
def test_no_server_is_one_line_and_exit_2(
    url: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = doctor(capsys, url.replace("{closed}", str(free_port())))
    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith("psyche-sse: error: ") and says in result.err
    assert result.err.count("\n") == 1


def test_something_else_at_the_url_is_one_line_and_exit_2(
    server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    result = doctor(capsys, f"{server.url}/static")
    assert result.code == 2
    assert result.err == (
        f"psyche-sse: error: no psyche-sse at {server.url}/static: GET /healthz answered 404\n"
    )


def test_the_verdict_compares_delays_not_clocks() -> None:
    """A server clock an hour off changes nothing; events held back to the end do."""
    hour = 3600.0
    live = [Arrival(at=100.0 + t, sent=hour + t + 0.01 * (t % 2)) for t in range(10)]
    assert not Measure.of(99.9, live).buffered
    held = [Arrival(at=109.0, sent=hour + t) for t in range(10)]
    measure = Measure.of(99.9, held)
    assert measure.buffered
    assert (measure.sent_span, measure.arrival_span, measure.held_back) == (9.0, 0.0, 9.0)


@pytest.mark.slow
def test_over_tls_the_certificate_is_checked(
    server: LiveServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The documented nginx terminating TLS with a certificate of a test authority: refused
    (one line, exit 2) until the authority is trusted, with SSL_CERT_FILE."""
    with nginx_in_front(tmp_path, server.url) as nginx:
        assert nginx.ca is not None
        refused = doctor(capsys, nginx.url)
        nginx.ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        trusted = doctor(capsys, nginx.url)
    assert (refused.code, refused.out) == (2, "")
    assert refused.err.startswith(f"psyche-sse: error: cannot reach {nginx.url}: ")
    assert "CERTIFICATE_VERIFY_FAILED" in refused.err and "SSL_CERT_FILE" in refused.err
    assert refused.err.count("\n") == 1
    assert trusted.code == 0, trusted.out + trusted.err
    assert f"reachable:    {nginx.url}, psyche-sse" in trusted.out
    assert "verdict:      not buffered" in trusted.out
