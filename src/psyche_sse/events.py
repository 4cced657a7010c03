"""The event protocol: event types, their payloads, and their JSON and SSE encodings.

Every payload carries ``type``, ``timestamp``, ``session_id`` and ``round_id`` at its top
level. An :class:`Event` is a payload with its per-session sequence id; it renders itself to
JSON once and caches the result, so every subscriber of a format shares the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    ROUND_STARTED = "round_started"
    AGENT_PROCESSING_STARTED = "agent_processing_started"
    AGENT_PROCESSING_UPDATE = "agent_processing_update"
    AGENT_PROCESSING_COMPLETE = "agent_processing_complete"
    ROUND_COMPLETE = "round_complete"
    NETWORK_UPDATE = "network_update"
    SYSTEM_STATUS = "system_status"
    EMERGENCY_STATUS = "emergency_status"
    # Never published: a stream sends it first to a client it cannot replay to.
    SESSION_HISTORY = "session_history"


class TurnStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class Event:
    """One published event: ``id`` is the session's sequence number, strictly increasing."""

    id: int
    type: EventType
    data: dict[str, Any]
    _json: str | None = field(default=None, repr=False, compare=False)
    _encoded: dict[str, bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def session_id(self) -> str:
        return str(self.data["session_id"])

    @property
    def turn_id(self) -> str | None:
        meta = self.data.get("metadata")
        return meta.get("turn_id") if isinstance(meta, Mapping) else None

    def json(self) -> str:
        """The payload as compact JSON, rendered once."""
        if self._json is None:
            self._json = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return self._json

    def encoded(self, fmt: str, render: Callable[[Event], bytes]) -> bytes:
        """The event rendered for one wire format, by ``render`` the first time only.

        Every subscriber of that format then shares the same bytes.
        """
        if self._encoded is None:
            self._encoded = {}
        cached = self._encoded.get(fmt)
        if cached is None:
            cached = self._encoded[fmt] = render(self)
        return cached

    def json_line(self) -> str:
        """The CLI's ``--json`` form: the payload with its ``id``."""
        return json.dumps({"id": self.id, **self.data}, ensure_ascii=False)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode_sse(
    data: str,
    *,
    event: str | None = None,
    id: int | str | None = None,
    retry_ms: int | None = None,
) -> bytes:
    """One SSE message. Multi-line data becomes several ``data:`` lines, as the spec wants."""
    parts: list[str] = []
    if id is not None:
        parts.append(f"id: {id}\n")
    if event is not None:
        parts.append(f"event: {event}\n")
    if retry_ms is not None:
        parts.append(f"retry: {retry_ms}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()


def encode_comment(text: str = "") -> bytes:
    return f": {text}\n\n".encode()


# --- payload builders -------------------------------------------------------------------


def _base(kind: EventType, session_id: str, round_id: str) -> dict[str, Any]:
    return {
        "type": kind.value,
        "timestamp": utc_now(),
        "session_id": session_id,
        "round_id": round_id,
    }


def round_started(
    session_id: str,
    round_id: str,
    *,
    situation: str,
    index: int,
    agents: list[str],
    rounds: int = 1,
) -> dict[str, Any]:
    return {
        **_base(EventType.ROUND_STARTED, session_id, round_id),
        "situation": situation,
        "index": index,
        "agents": agents,
        "rounds": rounds,
    }


def round_complete(
    session_id: str,
    round_id: str,
    *,
    index: int,
    status: TurnStatus,
    duration_ms: int,
    turns: int,
) -> dict[str, Any]:
    return {
        **_base(EventType.ROUND_COMPLETE, session_id, round_id),
        "index": index,
        "status": status.value,
        "duration_ms": duration_ms,
        "turns": turns,
    }


def agent_started(
    session_id: str,
    round_id: str,
    *,
    agent_id: str,
    agent_type: str,
    situation: str,
    turn_id: str,
    model: str,
    interaction_count: int,
    has_memory: bool,
) -> dict[str, Any]:
    return {
        **_base(EventType.AGENT_PROCESSING_STARTED, session_id, round_id),
        "agent_id": agent_id,
        "agent_type": agent_type,
        "situation": situation,
        "metadata": {
            "interaction_count": interaction_count,
            "has_memory": has_memory,
            "turn_id": turn_id,
            "round_id": round_id,
            "model": model,
        },
    }


def agent_update(
    session_id: str,
    round_id: str,
    *,
    agent_id: str,
    partial_content: str,
    progress: float,
    turn_id: str,
    streaming: str,
) -> dict[str, Any]:
    return {
        **_base(EventType.AGENT_PROCESSING_UPDATE, session_id, round_id),
        "agent_id": agent_id,
        "partial_content": partial_content,
        "progress": round(progress, 4),
        "metadata": {
            "chunk_size": len(partial_content),
            "turn_id": turn_id,
            "streaming": streaming,
        },
    }


def agent_complete(
    session_id: str,
    round_id: str,
    *,
    agent_id: str,
    agent_type: str,
    final_content: str,
    sentiment: Mapping[str, Any],
    situation: str,
    interaction_count: int,
    has_memory: bool,
    turn_id: str,
    status: TurnStatus,
    streaming: str | None,
    model: str,
    usage: Mapping[str, int] | None,
    duration_ms: int,
    first_token_ms: int | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "situation": situation,
        "interaction_count": interaction_count,
        "has_memory": has_memory,
        "agent_type": agent_type,
        "turn_id": turn_id,
        "status": status.value,
        "streaming": streaming,
        "model": model,
        "usage": dict(usage) if usage else None,
        "duration_ms": duration_ms,
        "first_token_ms": first_token_ms,
        "progress": 1.0,
    }
    if extra:
        metadata.update(extra)
    return {
        **_base(EventType.AGENT_PROCESSING_COMPLETE, session_id, round_id),
        "agent_id": agent_id,
        "final_content": final_content,
        "sentiment": dict(sentiment),
        "metadata": metadata,
    }


def session_history(
    session_id: str, *, transcript: Mapping[str, Any], last_event_id: int
) -> dict[str, Any]:
    """The whole conversation as of event ``last_event_id``, for a client whose position
    the stream cannot replay from (the server restarted since, or it is older than the
    history kept in memory): it replaces what the client has, and the events after
    ``last_event_id`` follow. ``round_id`` is the newest round's, None before the first."""
    rounds = transcript.get("rounds") or ()
    return {
        "type": EventType.SESSION_HISTORY.value,
        "timestamp": utc_now(),
        "session_id": session_id,
        "round_id": rounds[-1]["id"] if rounds else None,
        "last_event_id": last_event_id,
        "transcript": dict(transcript),
    }


def merge_updates(events: Iterable[Event]) -> Event:
    """Fold consecutive ``agent_processing_update`` events of one turn into one.

    The merged event keeps the last id (so a client resuming from it misses nothing) and
    the last progress; its text is the concatenation, so no delta is lost.
    """
    batch = list(events)
    if len(batch) == 1:
        return batch[0]
    last = batch[-1]
    text = "".join(e.data["partial_content"] for e in batch)
    data = {
        **last.data,
        "partial_content": text,
        "metadata": {**last.data["metadata"], "chunk_size": len(text)},
    }
    return Event(id=last.id, type=last.type, data=data)
