"""Reading what a client sent: a JSON object or form fields, checked and bounded."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from .errors import HTTPError

JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_BODY_BYTES = 1 << 20


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_fields(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request's fields, from a JSON object or a form.

    ``allow_empty``: a request with no body at all is an empty set of fields.
    """
    kind = media_type(request)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    if kind in JSON_TYPES:
        body = await _read_body(request)
        if not body.strip() and allow_empty:
            return {}
        try:
            value = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise HTTPError(400, "the body is not valid JSON") from None
        if not isinstance(value, dict):
            raise HTTPError(400, "the JSON body must be an object")
        return value
    if kind in FORM_TYPES:
        form = await request.form()
        fields: dict[str, Any] = {}
        for key, item in form.multi_items():
            if isinstance(item, UploadFile):
                raise HTTPError(400, f"the field {key!r} must be text, not a file")
            fields.setdefault(key, item)
        return fields
    if allow_empty and not kind and not await _read_body(request):
        return {}
    raise HTTPError(
        415,
        "send the fields as JSON (Content-Type: application/json) or as a form "
        "(application/x-www-form-urlencoded)",
    )


async def _read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def text_field(fields: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    """A text field; empty counts as absent."""
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise HTTPError(400, f"the field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise HTTPError(400, f"the field {name!r} must be a string")
    return value


def int_field(fields: dict[str, Any], name: str, *, low: int, high: int) -> int | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise HTTPError(400, f"the field {name!r} must be a whole number") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise HTTPError(400, f"the field {name!r} must be a whole number")
    if not low <= value <= high:
        raise HTTPError(400, f"the field {name!r} must be between {low} and {high}")
    return value


# ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


def event_cursor(request: Request) -> int:
    """Where a stream resumes: ``Last-Event-ID`` (a reconnection) wins over ``?after=``."""
    for source, raw in (
        ("Last-Event-ID", request.headers.get("last-event-id")),
        ("after", request.query_params.get("after")),
    ):
        if raw is None or not raw.strip():
            continue
        if not _WHOLE_NUMBER.fullmatch(raw.strip()):
            raise HTTPError(400, f"{source} must be an event id (a whole number)")
        return int(raw)
    return 0


def query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    """A whole number from the query string, between ``low`` and ``high``; 400 otherwise."""
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise HTTPError(400, f"{name} must be a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise HTTPError(400, f"{name} must be between {low} and {high}")
    return value
