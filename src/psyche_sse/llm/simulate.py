"""Simulated streaming: a whole reply cut into word-aligned chunks that concatenate exactly."""

from __future__ import annotations

import re

_WORD = re.compile(r"\S+\s*")


def split_words(text: str) -> list[str]:
    """Each word with the whitespace after it; leading whitespace joins the first word."""
    lead = len(text) - len(text.lstrip())
    words = _WORD.findall(text, lead)
    if not words:
        return [text] if text else []
    words[0] = text[:lead] + words[0]
    return words


def chunk_text(text: str, chunks: int) -> list[str]:
    """Cut ``text`` into about ``chunks`` pieces at word boundaries.

    ``"".join(chunk_text(t, n)) == t`` for every ``t`` and ``n``: leading whitespace joins
    the first piece and every piece keeps the whitespace that follows its words.
    """
    words = split_words(text)
    size = max(1, -(-len(words) // max(1, chunks)))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]
