"""Reading what a client sent: a JSON object or form fields, checked and bounded.

Nothing a client sends reaches the engine, the store or a template unchecked: text is
valid Unicode (no lone surrogates, which JSON can carry and UTF-8 cannot encode) and
bounded, numbers are short, ids have an id's shape. Anything else is a 400 (a 404 for an
id in a path: there is nothing at that address).
"""

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
# Any one text field; the engine applies its own, lower limits after cleaning the text.
MAX_TEXT_CHARS = 100_000
# Python's int() refuses strings of more than 4,300 digits with a ValueError; no field
# of ours needs more than a few.
MAX_INT_DIGITS = 30
# A session's, round's or turn's id: ours are hex, and anything of this shape may be one.
ID_SHAPE = re.compile(r"[0-9A-Za-z_-]{1,64}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _NumberTooLong(ValueError):
    pass


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS + 1:  # one for a minus sign
        raise _NumberTooLong
    return int(digits)


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
            value = json.loads(body, parse_int=_bounded_int)
        except _NumberTooLong:
            raise HTTPError(
                400, f"a number in the JSON body has more than {MAX_INT_DIGITS} digits"
            ) from None
        except RecursionError:
            raise HTTPError(400, "the JSON body is nested too deeply") from None
        except (UnicodeDecodeError, ValueError):  # json.JSONDecodeError is a ValueError
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


def check_text(name: str, value: str, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    """``value``, when it is text we can store and show; a 400 otherwise."""
    if _SURROGATE.search(value):
        raise HTTPError(400, f"the field {name!r} is not valid text (it has a lone surrogate)")
    if len(value) > max_chars:
        raise HTTPError(400, f"the field {name!r} is too long (the limit is {max_chars})")
    return value


def text_field(
    fields: dict[str, Any], name: str, *, required: bool = False, max_chars: int = MAX_TEXT_CHARS
) -> str | None:
    """A text field; empty counts as absent."""
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise HTTPError(400, f"the field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise HTTPError(400, f"the field {name!r} must be a string")
    return check_text(name, value, max_chars=max_chars)


def id_field(fields: dict[str, Any], name: str) -> str | None:
    """An id (``session_id``, ``turn_id``): letters, digits, ``-`` and ``_``, at most 64."""
    value = text_field(fields, name, max_chars=1000)
    if value is not None and not ID_SHAPE.fullmatch(value):
        raise HTTPError(
            400,
            f"the field {name!r} is not an id (letters, digits, - and _; at most 64)",
            code=f"invalid_{name}",
        )
    return value


def path_session_id(request: Request) -> str:
    """The session id in the request's path; a 404 when it cannot be one."""
    value = str(request.path_params["session_id"])
    if not ID_SHAPE.fullmatch(value):
        raise HTTPError(404, "there is no session with this id", code="session_not_found")
    return value


def int_field(fields: dict[str, Any], name: str, *, low: int, high: int) -> int | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = _bounded_int(value.strip())
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
