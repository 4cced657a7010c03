"""Whatever a client sends to a write route, the answer is a 4xx or a success, never a 5xx,
and every error carries the security headers. In process: these responses all end.

Rounds that an example starts are stopped before the next example, so no work piles up.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from psyche_sse.config import Settings
from psyche_sse.engine import Engine
from psyche_sse.web import create_app

pytestmark = pytest.mark.anyio

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy")
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass
class App:
    client: httpx.AsyncClient
    engine: Engine
    write_routes: list[tuple[str, str]]  # (method, path template)

    def a_session(self) -> str:
        """A session in memory, with no round run: enough for every route that needs one."""
        return self.engine.live.new().id

    async def settle(self) -> None:
        """Stop whatever rounds the last request started, and wait until they have."""
        for session in list(self.engine.live.by_id.values()):
            if session.running:
                await self.engine.rounds.stop(session.id)
                if session.finished is not None:
                    await session.finished.wait()


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    # The engine is ours, with no lifespan: nothing imports LiteLLM for these requests.
    config = Settings(db=tmp_path / "psyche.db", offline_tps=0)
    async with Engine(config) as engine:
        asgi = create_app(config, engine=engine)
        routes = [
            (method, route.path)
            for route in asgi.routes
            if isinstance(route, Route)
            for method in sorted(route.methods or ())
            if method not in ("GET", "HEAD")
        ]
        transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield App(client, engine, routes)
            await App(client, engine, routes).settle()


def assert_sound(response: httpx.Response) -> None:
    """Not a 5xx; an error from the API is a JSON error; every answer has the headers."""
    assert response.status_code < 500, response.text[:500]
    for name in SECURITY_HEADERS:
        assert name in response.headers, (name, response.status_code)
    if response.status_code >= 400 and response.request.url.path.startswith("/api/"):
        error = response.json()["error"]
        assert error["status"] == response.status_code
        assert isinstance(error["message"], str)


# --- the five inputs that reached a 500 -------------------------------------------------------

SURROGATE = b'"\\ud800"'  # the JSON escape of a lone surrogate


async def test_every_write_route_is_listed(app: App) -> None:
    assert ("POST", "/api/rounds") in app.write_routes
    assert ("DELETE", "/api/sessions/{session_id}") in app.write_routes
    assert ("POST", "/s/{session_id}/rename") in app.write_routes
    assert len(app.write_routes) >= 8


async def test_a_lone_surrogate_in_session_id_is_a_400(app: App) -> None:
    body = b'{"situation": "hi", "session_id": ' + SURROGATE + b"}"
    response = await app.client.post("/api/rounds", content=body, headers=JSON_HEADERS)
    assert_sound(response)
    assert response.status_code == 400
    assert "session_id" in response.json()["error"]["message"]


async def test_a_lone_surrogate_in_turn_id_is_a_400(app: App) -> None:
    sid = app.a_session()
    body = b'{"turn_id": ' + SURROGATE + b"}"
    response = await app.client.post(
        f"/api/sessions/{sid}/stop", content=body, headers=JSON_HEADERS
    )
    assert_sound(response)
    assert response.status_code == 400
    assert "turn_id" in response.json()["error"]["message"]


async def test_a_lone_surrogate_in_a_title_is_a_400(app: App) -> None:
    sid = app.a_session()
    for body in (b'{"title": ' + SURROGATE + b"}", b'{"title": "a\\ud800b"}'):
        response = await app.client.patch(
            f"/api/sessions/{sid}", content=body, headers=JSON_HEADERS
        )
        assert_sound(response)
        assert response.status_code == 400
        assert "title" in response.json()["error"]["message"]


async def test_a_lone_surrogate_in_the_rename_form_shows_the_form_again(app: App) -> None:
    sid = app.a_session()
    response = await app.client.post(
        f"/s/{sid}/rename",
        content=b'{"title": ' + SURROGATE + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert_sound(response)
    assert response.status_code == 400
    assert "<form" in response.text and "title" in response.text


async def test_a_lone_surrogate_in_a_situation_is_a_400(app: App) -> None:
    for body in (b'{"situation": ' + SURROGATE + b"}", b'{"situation": "a\\ud800b"}'):
        response = await app.client.post("/api/rounds", content=body, headers=JSON_HEADERS)
        assert_sound(response)
        assert response.status_code == 400
        assert "situation" in response.json()["error"]["message"]
    assert not app.engine.live.by_id


async def test_a_lone_surrogate_in_the_page_form_shows_the_form_again(app: App) -> None:
    response = await app.client.post(
        "/rounds",
        content=b'{"situation": ' + SURROGATE + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert_sound(response)
    assert response.status_code == 400
    assert 'id="situation"' in response.text
    assert "situation" in re.sub(r"<[^>]+>", "", response.text)


async def test_an_integer_of_5000_digits_is_a_400(app: App) -> None:
    body = b'{"situation": "hi", "rounds": ' + b"7" * 5000 + b"}"
    response = await app.client.post("/api/rounds", content=body, headers=JSON_HEADERS)
    assert_sound(response)
    assert response.status_code == 400
    assert not app.engine.live.by_id


async def test_json_nested_100000_deep_is_a_400(app: App) -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        response = await app.client.post("/api/rounds", content=body, headers=JSON_HEADERS)
        assert_sound(response)
        assert response.status_code == 400
        assert "JSON" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "session_id", ["x" * 65, "a/b", "a b", "é", "a\x00b", "..", "a.b", "<script>"]
)
async def test_a_session_id_of_the_wrong_shape_is_a_400_in_a_body(
    app: App, session_id: str
) -> None:
    response = await app.client.post(
        "/api/rounds", json={"situation": "hi", "session_id": session_id}, headers=JSON_HEADERS
    )
    assert_sound(response)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_session_id"


@pytest.mark.parametrize("session_id", ["x" * 65, "a b", "é", "a\x00b", "a.b"])
async def test_a_session_id_of_the_wrong_shape_is_a_404_in_a_path(
    app: App, session_id: str
) -> None:
    path = quote(session_id, safe="")
    for method, url in (
        ("PATCH", f"/api/sessions/{path}"),
        ("DELETE", f"/api/sessions/{path}"),
        ("POST", f"/api/sessions/{path}/stop"),
        ("GET", f"/api/sessions/{path}"),
    ):
        response = await app.client.request(method, url, json={"title": "t"})
        assert_sound(response)
        assert response.status_code == 404, (method, url)


# --- every write route, whatever it is sent ---------------------------------------------------

# Any text a JSON string can carry, lone surrogates included.
any_text = st.text(st.characters(exclude_categories=[]), max_size=40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.just("<huge>"),  # an integer past the 4,300 digits int() reads
    st.floats(),
    any_text,
    st.sampled_from(
        ["hi", "", "   ", "\ud800", "a\udfffb", "yes", "1", "20", "21", "-1", "x" * 5000]
    ),
    st.just("<known>"),  # a session that exists
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)
FIELDS = ["situation", "session_id", "rounds", "seed", "title", "turn_id", "confirm", "next"]
json_objects = st.fixed_dictionaries(
    {}, optional={name: json_values for name in FIELDS}
) | st.dictionaries(any_text, json_values, max_size=3)
form_fields = st.fixed_dictionaries(
    {},
    optional={
        name: scalars.map(lambda v: v if isinstance(v, str) else json.dumps(v)) for name in FIELDS
    },
)


def _form(fields: dict[str, str]) -> bytes:
    return "&".join(
        f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in fields.items()
    ).encode()


bodies = st.one_of(
    json_objects.map(lambda v: ("json", v)),
    json_values.map(lambda v: ("json", v)),
    form_fields.map(lambda v: ("form", v)),
    st.binary(max_size=200).map(lambda v: ("bytes", v)),
    st.sampled_from(
        [b"[" * 100_000 + b"]" * 100_000, b'{"rounds": ' + b"9" * 5000 + b"}", b"\xff\xfe{}"]
    ).map(lambda v: ("raw json", v)),
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "text/plain",
        "application/octet-stream",
        "APPLICATION/JSON",
        ";;;",
    ]
)
NATURAL_TYPES = {
    "json": "application/json",
    "raw json": "application/json",
    "form": "application/x-www-form-urlencoded",
}
path_ids = st.one_of(
    st.just("<known>"),
    st.just("nope"),
    st.text(max_size=70).filter(lambda t: t not in ("", ".", "..")),
)
accepts = st.sampled_from([None, "application/json", "text/html", "text/event-stream"])


def encode(body: tuple[str, object], known: str) -> bytes:
    kind, value = body

    def fill(v: object) -> object:
        if v == "<known>":
            return known
        if isinstance(v, list):
            return [fill(x) for x in v]
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        return v

    if kind == "json":
        # Lone surrogates travel as JSON escapes, as any client can send them.
        text = json.dumps(fill(value), ensure_ascii=True)
        return text.replace('"<huge>"', "9" * 5000).encode()
    if kind == "form":
        assert isinstance(value, dict)
        return _form({k: str(fill(v)).replace("<huge>", "9" * 5000) for k, v in value.items()})
    assert isinstance(value, bytes)
    return value


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.integers(min_value=0, max_value=1000),
    body=bodies,
    content_type=content_types,
    path_id=path_ids,
    accept=accepts,
    htmx=st.booleans(),
    natural=st.booleans(),
)
async def test_no_write_route_answers_a_5xx(
    app: App,
    route: int,
    body: tuple[str, object],
    content_type: str | None,
    path_id: str,
    accept: str | None,
    htmx: bool,
    natural: bool,
) -> None:
    method, template = app.write_routes[route % len(app.write_routes)]
    known = app.a_session()
    sid = known if path_id == "<known>" else path_id
    path = template.replace("{session_id}", quote(sid.encode("utf-8", "surrogatepass"), safe=""))
    headers = {}
    if natural and body[0] in NATURAL_TYPES:
        content_type = NATURAL_TYPES[body[0]]
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    if htmx:
        headers["HX-Request"] = "true"
    try:
        content = encode(body, known)
        response = await app.client.request(method, path, content=content, headers=headers)
        assert_sound(response)
    finally:
        await app.settle()
