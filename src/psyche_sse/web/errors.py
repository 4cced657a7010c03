"""Errors a client can be shown, and how each kind of client is shown them.

API clients get JSON (``{"error": {"status", "code", "message"}}``), htmx requests a
fragment in the page's error line, browsers an error page. Nothing else of an exception
(no stack trace, no exception text we did not write) ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from markupsafe import escape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from ..errors import BusUnavailable

if TYPE_CHECKING:
    from .render import Renderer

log = logging.getLogger(__name__)

_TITLES = MappingProxyType(
    {
        400: "Bad request",
        401: "Sign in",
        403: "Forbidden",
        404: "Not found",
        405: "Method not allowed",
        409: "Busy",
        413: "Too large",
        415: "Unsupported content type",
        422: "Not accepted",
        429: "Too many requests",
        500: "Something went wrong",
        503: "Unavailable",
    }
)
_CODES = MappingProxyType(
    {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "too_large",
        415: "unsupported_media_type",
        422: "invalid",
        429: "too_many_requests",
        500: "internal_error",
        503: "unavailable",
    }
)


class HTTPError(Exception):
    """An error with a status and a message meant for the person who sent the request."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.headers = headers or {}


def wants_json(request: Request) -> bool:
    if request.url.path.startswith("/api/") or request.url.path == "/healthz":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def json_error(status: int, message: str, code: str | None = None) -> JSONResponse:
    body = {
        "error": {"status": status, "code": code or _CODES.get(status, "error"), "message": message}
    }
    return JSONResponse(body, status_code=status)


def htmx_error(status: int, message: str) -> HTMLResponse:
    """The message in the page's error line (``#composer-error``)."""
    html = (
        f'<hx-partial hx-target="#composer-error" hx-swap="innerHTML">{escape(message)}'
        "</hx-partial>"
    )
    return HTMLResponse(html, status_code=status)


def error_response(
    renderer: Renderer, request: Request, status: int, message: str, code: str | None = None
) -> Response:
    if wants_json(request):
        return json_error(status, message, code)
    if is_htmx(request):
        return htmx_error(status, message)
    html = renderer.env.get_template("error.html").render(
        status=status, title=_TITLES.get(status, "Error"), message=message
    )
    return HTMLResponse(html, status_code=status)


Handler = Callable[[Request, Exception], Awaitable[Response]]


def handlers(renderer: Renderer) -> dict[Any, Handler]:
    """The handlers for our errors, Starlette's, and anything unexpected."""

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPError)
        response = error_response(renderer, request, exc.status, exc.message, exc.code)
        response.headers.update(exc.headers)
        return response

    async def on_starlette_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = "There is nothing at this address."
        elif exc.status_code == 405:
            message = f"{request.method} is not supported here."
        else:
            message = _TITLES.get(exc.status_code, "The request could not be handled.")
        response = error_response(renderer, request, exc.status_code, message)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            renderer, request, 500, "The server hit an unexpected error; it has been logged."
        )

    async def on_bus_unavailable(request: Request, exc: Exception) -> Response:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return error_response(renderer, request, 503, BUS_UNAVAILABLE, "bus_unavailable")

    return {
        HTTPError: on_http_error,
        HTTPException: on_starlette_error,
        BusUnavailable: on_bus_unavailable,
        Exception: on_unexpected,
    }


BUS_UNAVAILABLE = (
    "The workers cannot reach each other (Redis is unavailable), or none runs rounds now; "
    "try again shortly."
)
