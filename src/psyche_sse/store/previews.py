"""The line of the sessions list that says what was said: the newest reply's first words,
or, before any reply, the newest situation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .connection import Connection

# Characters read of each text: enough for a preview line, whatever the text's length.
READ_CHARS = 400
PREVIEW_CHARS = 140
# Markdown's marks that mean nothing in one plain line.
_MARKS = re.compile(r"[*_`]+|^\s*[#>]+", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Preview:
    """The start of a session's newest reply (``agent_id`` its speaker), or of its newest
    situation (``agent_id`` None)."""

    agent_id: str | None
    text: str

    def line(self, limit: int = PREVIEW_CHARS) -> str:
        """One line of at most ``limit`` characters, cut at a word's end (with "…")."""
        text = " ".join(_MARKS.sub(" ", self.text).split())
        if self.agent_id:
            text = f"{self.agent_id}: {text}"
        return shorten(text, limit)


def shorten(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters; else its words that fit, then "…"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if text[limit - 1] != " " and space > limit // 3:
        cut = cut[:space]  # the last word would be cut
    return cut.rstrip(" ,;:.-–—") + "…"


def previews(conn: Connection, *, session_ids: Sequence[str]) -> dict[str, Preview]:
    """The preview of each of ``session_ids`` that has said anything."""
    if not session_ids:
        return {}
    marks = ", ".join("?" * len(session_ids))
    rows = conn.execute(
        f"SELECT s.id, t.agent_id, substr(t.text, 1, {READ_CHARS}),"
        f" (SELECT substr(r.situation, 1, {READ_CHARS}) FROM rounds r WHERE r.session_id = s.id"
        "  ORDER BY r.idx DESC LIMIT 1)"
        " FROM sessions s LEFT JOIN turns t ON t.id = ("
        "   SELECT t2.id FROM turns t2 JOIN rounds r2 ON r2.id = t2.round_id"
        "   WHERE t2.session_id = s.id AND t2.text <> '' AND t2.status <> 'error'"
        "   ORDER BY r2.idx DESC, t2.position DESC LIMIT 1)"
        f" WHERE s.id IN ({marks})",
        tuple(session_ids),
    ).fetchall()
    found: dict[str, Preview] = {}
    for session_id, agent_id, text, situation in rows:
        if text:
            found[session_id] = Preview(agent_id, text)
        elif situation:
            found[session_id] = Preview(None, situation)
    return found
