"""The app in process: what a client sees when something breaks, and cross-site posts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from psyche_sse.config import Settings
from psyche_sse.web import create_app
from psyche_sse.web.security import CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.anyio


class BrokenEngine:
    """An engine whose every session lookup fails in a way nobody planned for."""

    def __init__(self) -> None:
        self.sessions: dict[str, Any] = {}

    async def load_session(self, session_id: str) -> NoReturn:
        raise RuntimeError("secret internals: /etc/passwd at line 42")


def client(tmp_path: Path) -> httpx.AsyncClient:
    app = create_app(Settings(db=tmp_path / "db"), engine=BrokenEngine())  # type: ignore[arg-type]
    # These responses are not streams, so ASGITransport serves them; no lifespan is needed.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def test_an_unexpected_error_is_a_plain_500_page_with_no_trace(tmp_path: Path) -> None:
    async with client(tmp_path) as c:
        response = await c.get("/s/abc")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text


async def test_an_unexpected_error_on_the_api_is_json(tmp_path: Path) -> None:
    async with client(tmp_path) as c:
        response = await c.get("/api/sessions/abc")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret internals" not in response.text


@pytest.mark.parametrize("path", ["/s/abc", "/api/sessions/abc", "/nothing-here"])
async def test_every_error_has_the_security_headers(tmp_path: Path, path: str) -> None:
    async with client(tmp_path) as c:
        response = await c.get(path)
    assert response.status_code in (404, 500)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


async def test_a_cross_site_post_is_refused(tmp_path: Path) -> None:
    async with client(tmp_path) as c:
        response = await c.post(
            "/rounds", data={"situation": "hi"}, headers={"Origin": "https://evil.example"}
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
