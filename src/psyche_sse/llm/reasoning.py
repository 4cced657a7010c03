"""Split ``<think>…</think>`` reasoning out of a streamed reply, across chunk boundaries.

The splitter is the only cleaning a reply gets: what is not reasoning is passed through
unchanged, except the whitespace that separates a leading reasoning block from the answer.
"""

from __future__ import annotations

import re

_OPEN = re.compile(r"<(think|thinking|reasoning)>", re.IGNORECASE)
_LONGEST_TAG = len("</reasoning>")


def _partial_tag_start(text: str) -> int:
    """Where a tag that may continue in the next chunk begins, or ``len(text)``."""
    start = text.rfind("<", max(0, len(text) - _LONGEST_TAG))
    if start == -1 or ">" in text[start:]:
        return len(text)
    fragment = text[start:].lower()
    for tag in ("<think>", "<thinking>", "<reasoning>", "</think>", "</thinking>", "</reasoning>"):
        if tag.startswith(fragment):
            return start
    return len(text)


class ReasoningSplitter:
    """Feed chunks in, get ``(answer_text, reasoning_text)`` out; call :meth:`flush` at end."""

    def __init__(self) -> None:
        self._pending = ""
        self._inside: str | None = None
        self._answer_started = False
        self.reasoning = ""

    def feed(self, chunk: str) -> tuple[str, str]:
        text = self._pending + chunk
        self._pending = ""
        answer: list[str] = []
        thought: list[str] = []
        while text:
            if self._inside is None:
                match = _OPEN.search(text)
                if match is None:
                    cut = _partial_tag_start(text)
                    answer.append(text[:cut])
                    self._pending = text[cut:]
                    break
                answer.append(text[: match.start()])
                self._inside = match.group(1).lower()
                text = text[match.end() :]
            else:
                close = f"</{self._inside}>"
                end = text.lower().find(close)
                if end == -1:
                    cut = _partial_tag_start(text)
                    thought.append(text[:cut])
                    self._pending = text[cut:]
                    break
                thought.append(text[:end])
                self._inside = None
                text = text[end + len(close) :]
        return self._emit("".join(answer)), self._think("".join(thought))

    def flush(self) -> tuple[str, str]:
        """The end of the stream: a half tag is text after all, an unclosed block is reasoning."""
        rest, self._pending = self._pending, ""
        if self._inside is not None:
            return "", self._think(rest)
        return self._emit(rest), ""

    def _emit(self, text: str) -> str:
        if not self._answer_started:
            text = text.lstrip()
            self._answer_started = bool(text)
        return text

    def _think(self, text: str) -> str:
        self.reasoning += text
        return text
