"""Log lines as text (the default) or as JSON, one object a line (``log_format = "json"``).

A JSON line has ``time``, ``level``, ``logger`` and ``message``, and ``session_id``,
``round_id`` and ``turn_id`` when it was logged while a round or a turn ran: the engine
binds them (:meth:`LogIds.bind`) where a round and a turn run, so every line logged inside,
by any module, carries them. Handlers are set only by the entry points (the CLI and
``psyche-sse serve``), which hand the engine the :class:`LogIds` their handlers read.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from .config import LogFormat

IDS = ("session_id", "round_id", "turn_id")


class LogIds:
    """The ids of the round and turn the current task is running, for its log lines."""

    def __init__(self) -> None:
        # One variable per instance: each engine (and the handlers given it) has its own.
        self._ids: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("log_ids", default=())

    @contextmanager
    def bind(self, **ids: str) -> Iterator[None]:
        """Lines logged by this task (and tasks it starts) inside the block carry ``ids``."""
        current = dict(self._ids.get())
        current.update(ids)
        token = self._ids.set(tuple(current.items()))
        try:
            yield
        finally:
            self._ids.reset(token)

    def current(self) -> tuple[tuple[str, str], ...]:
        """The ids bound here, as (name, value) pairs."""
        return self._ids.get()


class IdsFilter(logging.Filter):
    """Puts the bound ids on each record that passes (as attributes the formatter reads)."""

    def __init__(self, ids: LogIds) -> None:
        super().__init__()
        self.ids = ids

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.ids.current():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, and the ids."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in IDS:
            value = getattr(record, key, None)
            if isinstance(value, str):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def use_format(log_format: LogFormat, ids: LogIds, logger: logging.Logger | None = None) -> None:
    """Make the handlers of ``logger`` (the root logger by default) write ``log_format``;
    with JSON, each line also carries the ids bound in ``ids`` (in place of those of an
    earlier call)."""
    if log_format != "json":
        return
    target = logger or logging.getLogger()
    for handler in target.handlers:
        handler.setFormatter(JsonFormatter())
        for old in [f for f in handler.filters if isinstance(f, IdsFilter)]:
            handler.removeFilter(old)
        handler.addFilter(IdsFilter(ids))


# A shared link's token is its only credential: the access log shows ``/shared/…`` instead.
_SHARED_LINK = re.compile(r"(/shared/)[^/?#\s\"]+")


class SharedLinkFilter(logging.Filter):
    """Hides the token of every shared link (``/shared/<token>``) in a log line's arguments
    (uvicorn's access log: client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SHARED_LINK.sub(r"\1…", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def uvicorn_config(
    log_format: LogFormat, ids: LogIds, base: dict[str, Any] | None
) -> dict[str, Any] | None:
    """uvicorn's ``log_config`` (``base``) in ``log_format``: as it is for text, its every
    formatter JSON for JSON; in both, the access log hides shared links' tokens."""
    if base is None:
        return base
    config = copy.deepcopy(base)
    config["filters"] = {**config.get("filters", {}), "shared_links": {"()": SharedLinkFilter}}
    access = config.setdefault("loggers", {}).setdefault("uvicorn.access", {})
    access["filters"] = [*access.get("filters", []), "shared_links"]
    if log_format != "json":
        return config
    config["formatters"] = {name: {"()": JsonFormatter} for name in config.get("formatters", {})}
    config["filters"] = {**config.get("filters", {}), "ids": {"()": IdsFilter, "ids": ids}}
    for handler in config.get("handlers", {}).values():
        handler["filters"] = [*handler.get("filters", []), "ids"]
    return config
