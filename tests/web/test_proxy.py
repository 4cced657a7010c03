"""Behind Debian's nginx, configured as docs/deploy.md says (TLS terminated by nginx): the
stream passes unbuffered, resuming works, and the client's address and scheme count only
from a trusted proxy (``PSYCHE_TRUSTED_PROXIES``)."""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import trustme
from httpx_sse import connect_sse

from psyche_sse.config import Settings, load_settings
from psyche_sse.errors import ConfigError
from tests.live import LiveServer, serve_in_thread, stop_server
from tests.nginx import (
    DEPLOY_DOC,
    NGINX,
    Nginx,
    documented_config,
    main_config,
    start_nginx,
    stop_nginx,
)
from tests.web.sse import Msg, assert_whole_round, follow_round, messages, start_round

CLIENT = "203.0.113.7"  # TEST-NET-3: an address no test machine has


@dataclass
class Proxied:
    server: LiveServer
    nginx: Nginx


@contextmanager
def proxied(where: Path, **settings: str) -> Iterator[Proxied]:
    (where / "server").mkdir()
    server = serve_in_thread(where / "server", **settings)
    try:
        nginx = start_nginx(where / "nginx", server.url)
        try:
            yield Proxied(server, nginx)
        finally:
            stop_nginx(nginx)
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def trusted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """nginx in front of a server that trusts it; a round lasts a few seconds."""
    where = tmp_path_factory.mktemp("trusted")
    settings = {"offline_tps": "100", "trusted_proxies": "127.0.0.1", "access_log": "true"}
    with proxied(where, **settings) as setup:
        yield setup


@pytest.fixture(scope="module")
def untrusted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """nginx in front of a server that trusts no proxy (the default)."""
    with proxied(tmp_path_factory.mktemp("untrusted"), offline_tps="100") as setup:
        yield setup


def whoami(nginx: Nginx, **headers: str) -> dict[str, str]:
    with nginx.client() as client:
        response = client.get("/api/whoami", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def test_the_client_address_and_scheme_come_from_a_trusted_proxy_only(
    trusted: Proxied, untrusted: Proxied, caplog: pytest.LogCaptureFixture
) -> None:
    # nginx appends the address it was reached from (127.0.0.1) to what the client sent:
    # the server takes the last address that is not a trusted proxy's.
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        seen = whoami(trusted.nginx, **{"X-Forwarded-For": CLIENT})
    assert seen == {"client": CLIENT, "scheme": "https", "user": "local"}
    # The access log names the same client.
    logged = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any(CLIENT in line and "/api/whoami" in line for line in logged), logged
    # Not trusted: the headers are ignored, the peer is nginx, over plain HTTP.
    seen = whoami(untrusted.nginx, **{"X-Forwarded-For": CLIENT})
    assert seen == {"client": "127.0.0.1", "scheme": "http", "user": "local"}


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(untrusted: Proxied) -> None:
    headers = {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https"}
    with untrusted.server.client() as client:
        seen = client.get("/api/whoami", headers=headers).json()
    assert (seen["client"], seen["scheme"]) == ("127.0.0.1", "http")


def test_a_browser_write_through_the_tls_proxy_passes_the_origin_check(
    trusted: Proxied, untrusted: Proxied
) -> None:
    """A page served over HTTPS by nginx posts with ``Origin: https://host``: the server
    knows the scheme from X-Forwarded-Proto when it trusts nginx."""

    def post(nginx: Nginx, origin: str) -> int:
        headers = {"Origin": origin, "Sec-Fetch-Site": "same-origin", "Accept": "application/json"}
        with nginx.client() as client:
            response = client.post("/api/rounds", json={"situation": "a"}, headers=headers)
            if response.status_code == 202:
                client.post(f"/api/sessions/{response.json()['session_id']}/stop", json={})
        return response.status_code

    assert post(trusted.nginx, trusted.nginx.url) == 202
    assert post(trusted.nginx, "https://elsewhere.example") == 403
    # Without trust the server sees http and takes the https origin for another site's.
    assert post(untrusted.nginx, untrusted.nginx.url) == 403


def test_https_on_its_default_port_passes_the_origin_check(trusted: Proxied) -> None:
    """As nginx on port 443 forwards a page's write: ``Host`` with no port, scheme https."""
    headers = {
        "Host": "localhost",
        "Origin": "https://localhost",
        "X-Forwarded-Proto": "https",
        "Accept": "application/json",
    }
    with trusted.server.client() as client:
        started = client.post("/api/rounds", json={"situation": "a"}, headers=headers)
        assert started.status_code == 202, started.text
        client.post(f"/api/sessions/{started.json()['session_id']}/stop", json={})
        plain = client.post(
            "/api/rounds", json={"situation": "a"}, headers={**headers, "X-Forwarded-Proto": "http"}
        )
    assert plain.status_code == 403


def _at(msg: Msg) -> float:
    return datetime.fromisoformat(msg.data["timestamp"]).timestamp()


@pytest.mark.slow
def test_a_turn_reaches_the_client_through_nginx_as_it_is_made(tmp_path: Path) -> None:
    """With a slow model (20 tokens a second) a turn lasts seconds. Through nginx the client
    gets its first delta long before the turn's end, and no event is held back against the
    others by more than a fraction of the turn (an nginx that buffers, even in its default
    4-8 KiB buffers, holds the early events of a turn back by seconds)."""
    arrived: list[tuple[float, Msg]] = []
    with (
        proxied(tmp_path, offline_tps="20", trusted_proxies="127.0.0.1") as setup,
        setup.nginx.client() as client,
        connect_sse(
            client, "POST", "/api/rounds", json={"situation": "My sister owes me money"}
        ) as source,
    ):
        for msg in messages(source):
            arrived.append((time.monotonic(), msg))
            if msg.type == "agent_processing_complete":
                break
    turn = [(t, m) for t, m in arrived if m.turn_id == arrived[-1][1].turn_id]
    assert [m.type for _, m in turn[:2]] == ["agent_processing_started", "agent_processing_update"]
    first_delta, complete = turn[1][0], turn[-1][0]
    made = _at(turn[-1][1]) - _at(turn[0][1])  # the turn's length, by its own timestamps
    assert made > 1.0, "a turn at 20 tokens a second lasts seconds"
    assert complete - first_delta > made / 2
    # Each event's delay (arrival minus timestamp, the clocks' offset included) against the
    # least delayed one's: what something between held it back by.
    delays = [t - _at(m) for t, m in turn]
    assert max(delays) - min(delays) < made / 3, (max(delays) - min(delays), made)


@pytest.mark.slow
def test_resuming_through_nginx_has_no_gap_and_no_duplicate(trusted: Proxied) -> None:
    with trusted.nginx.client() as client:
        body = start_round(client, "My manager took credit for my work")
        url = body["events_url"]
        first: list[Msg] = []
        with connect_sse(client, "GET", url) as source:
            for msg in messages(source):
                first.append(msg)
                updates = [m for m in first if m.type == "agent_processing_update"]
                if len({m.turn_id for m in updates}) == 2 and first[-1] is updates[-1]:
                    break  # mid-round, mid-turn: hang up
        # As a browser reconnects: the same URL, with the last id it saw.
        rest = follow_round(client, url, **{"Last-Event-ID": str(first[-1].id)})
    assert rest[0].id > first[-1].id
    assert_whole_round(first + rest)


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().trusted_proxies == ()  # the default: no proxy is trusted
    monkeypatch.setenv("PSYCHE_TRUSTED_PROXIES", " 10.0.0.0/8, 127.0.0.1,[::1], 192.168.1.7/24")
    assert load_settings().trusted_proxies == ("10.0.0.0/8", "127.0.0.1", "::1", "192.168.1.0/24")
    monkeypatch.setenv("PSYCHE_TRUSTED_PROXIES", "127.0.0.1,nginx")
    with pytest.raises(ConfigError, match=r"trusted_proxies.*'nginx' is not an IP address"):
        load_settings()


def test_the_documented_settings_file_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = DEPLOY_DOC.read_text()
    (toml,) = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "trusted_proxies" in b]
    (tmp_path / "psyche.toml").write_text(toml)
    monkeypatch.setenv("PSYCHE_CONFIG", str(tmp_path / "psyche.toml"))
    monkeypatch.delenv("PSYCHE_DB")
    settings = load_settings()
    assert settings.host == "127.0.0.1"
    assert settings.trusted_proxies == ("127.0.0.1",)
    assert "psyche.example.com" in settings.allowed_host_names()
    assert {"localhost", "127.0.0.1"} <= set(settings.allowed_host_names())


def test_the_whole_documented_configuration_passes_nginx_t(tmp_path: Path) -> None:
    """Both server blocks as the document has them (the redirect from port 80 too), but for
    the certificate's files: ``nginx -t`` reads them and checks the syntax, binding nothing."""
    ca = trustme.CA()
    issued = ca.issue_cert("psyche.example.com")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    config = re.sub(
        r"(ssl_certificate(?:_key)?)\s+\S+/(fullchain|privkey)\.pem;",
        lambda m: f"{m[1]} {tmp_path / ('cert.pem' if m[2] == 'fullchain' else 'key.pem')};",
        documented_config(),
    )
    assert str(tmp_path / "key.pem") in config
    (tmp_path / "nginx.conf").write_text(main_config(tmp_path, config))
    checked = subprocess.run(
        [NGINX, "-t", "-p", tmp_path, "-c", tmp_path / "nginx.conf", "-e", tmp_path / "error.log"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr
