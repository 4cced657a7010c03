"""Other hosts and other origins, with the headers a browser or a rebinding page really
sends, against a real server; and the settings that name the hosts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from psyche_sse.config import LOOPBACK_HOSTS, Settings, load_settings
from psyche_sse.web import create_app
from psyche_sse.web.security import SECURITY_HEADERS
from tests.live import LiveServer
from tests.web.sse import start_round


def port_of(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    for name, value in SECURITY_HEADERS:
        assert response.headers[name.decode()] == value.decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/api/sessions"),
        ("GET", "/static/psyche.css"),
        ("POST", "/api/rounds"),
        ("DELETE", "/api/sessions/nope"),
    ],
)
@pytest.mark.parametrize("host", ["rebound.example", "rebound.example:{port}", "127.0.0.1.evil"])
def test_a_request_for_another_host_is_a_400(
    fast_server: LiveServer, method: str, path: str, host: str
) -> None:
    with fast_server.client() as client:
        response = client.request(
            method,
            path,
            headers={"Host": host.format(port=port_of(fast_server))},
            data={"situation": "steal"} if method == "POST" else None,
        )
    assert_json_error(response, 400, "bad_host")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST", "localhost."])
def test_the_loopback_names_are_answered_on_any_port(fast_server: LiveServer, host: str) -> None:
    with fast_server.client() as client:
        for value in (host, f"{host}:{port_of(fast_server)}"):
            response = client.get("/healthz", headers={"Host": value})
            assert response.status_code == 200, (value, response.text)


def test_the_event_stream_of_another_host_is_a_400(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        body = start_round(client, "Mine to read")
        response = client.get(body["events_url"], headers={"Host": "rebound.example"})
    assert_json_error(response, 400, "bad_host")


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another port: another origin
        {"Origin": "http://localhost:{port}"},  # another name for this host: still another
        {"Origin": "https://127.0.0.1:{port}"},  # the scheme differs
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://127.0.0.1:{port}"},
    ],
)
def test_a_write_from_another_origin_is_a_403(
    fast_server: LiveServer, headers: dict[str, str]
) -> None:
    port = port_of(fast_server)
    sent = {k: v.format(port=port) for k, v in headers.items()}
    with fast_server.client() as client:
        response = client.post("/rounds", data={"situation": "from elsewhere"}, headers=sent)
    assert_json_error(response, 403, "forbidden")


def test_the_page_and_curl_still_write(fast_server: LiveServer) -> None:
    browser = {
        "Origin": fast_server.url,
        "Sec-Fetch-Site": "same-origin",
        "HX-Request": "true",
    }
    with fast_server.client() as client:
        page = client.post("/rounds", data={"situation": "From the page"}, headers=browser)
        typed = client.post(
            "/rounds",
            data={"situation": "A bookmark"},
            headers={"Sec-Fetch-Site": "none"},
            follow_redirects=False,
        )
        curl = client.post(
            "/api/rounds", data={"situation": "From curl"}, headers={"Accept": "application/json"}
        )
    assert page.status_code == 200 and "hx-partial" in page.text
    assert typed.status_code == 303
    assert curl.status_code == 202


def test_reads_from_another_origin_are_not_refused(fast_server: LiveServer) -> None:
    """A cross-site GET cannot change anything, and the browser keeps its answer from the
    page that asked (there is no CORS header): only the Host check applies."""
    with fast_server.client() as client:
        response = client.get(
            "/healthz", headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
        )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


# --- the setting ------------------------------------------------------------------------------


def test_allowed_hosts_default_to_loopback_and_the_bound_address() -> None:
    assert Settings().allowed_host_names() == LOOPBACK_HOSTS
    assert Settings(host="0.0.0.0").allowed_host_names() == LOOPBACK_HOSTS
    assert Settings(host="::").allowed_host_names() == LOOPBACK_HOSTS
    assert Settings(host="192.168.1.20").allowed_host_names() == (*LOOPBACK_HOSTS, "192.168.1.20")
    assert Settings(host="fd00::1").allowed_host_names() == (*LOOPBACK_HOSTS, "[fd00::1]")


def test_allowed_hosts_from_the_environment_are_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PSYCHE_ALLOWED_HOSTS", "psyche.example.com, *.lan ,,localhost")
    settings = load_settings()
    assert settings.allowed_host_names() == ("psyche.example.com", "*.lan", "localhost")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("allowed", "host", "status"),
    [
        (("*",), "anything.example", 200),
        (("psyche.example.com",), "psyche.example.com:443", 200),
        (("psyche.example.com",), "localhost", 400),
        (("*.example.com",), "a.example.com", 200),
        (("*.example.com",), "example.com.evil", 400),
    ],
)
async def test_allowed_hosts_in_the_app(
    tmp_path: Path, allowed: tuple[str, ...], host: str, status: int
) -> None:
    app = create_app(Settings(db=tmp_path / "db", allowed_hosts=allowed))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/static/favicon.svg", headers={"Host": host})
    assert response.status_code == status
