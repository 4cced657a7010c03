"""Searching the sessions: what a person typed, checked and cut into words, and a matching
passage as HTML with its matches marked.

What is typed is only ever text to find: words, and "phrases in double quotes". Nothing in it
acts as query syntax (the store quotes every word), and it is bounded: at most
:data:`MAX_QUERY_CHARS` characters and :data:`MAX_TERMS` words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from markupsafe import Markup, escape

from ..store.search import Fragment
from .errors import HTTPError
from .inputs import check_text

MAX_QUERY_CHARS = 200
MAX_TERMS = 12
_PIECES = re.compile(r'"([^"]*)"|(\S+)')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def search_terms(query: str) -> tuple[str, ...]:
    """The words and phrases of ``query``; 400 when it is empty, too long, or has too many.

    A piece with no letter or digit (``*``, ``-``, a lone quote) finds nothing, so it is
    dropped; quotes left inside a word are only characters.
    """
    if len(query) > MAX_QUERY_CHARS:
        raise HTTPError(
            400,
            f"the search is too long (the limit is {MAX_QUERY_CHARS} characters)",
            code="invalid_query",
        )
    check_text("q", query, max_chars=MAX_QUERY_CHARS)
    text = _CONTROL.sub(" ", query)
    terms: list[str] = []
    for match in _PIECES.finditer(text):
        piece = " ".join((match.group(1) if match.group(1) is not None else match.group(2)).split())
        if any(ch.isalnum() for ch in piece) and piece not in terms:
            terms.append(piece)
    if not terms:
        raise HTTPError(400, "type a word to search for", code="invalid_query")
    if len(terms) > MAX_TERMS:
        raise HTTPError(
            400,
            f"the search has too many words (the limit is {MAX_TERMS})",
            code="invalid_query",
        )
    return tuple(terms)


def highlight(passage: Iterable[Fragment]) -> Markup:
    """The passage as HTML: every fragment escaped, the matches then put in ``<mark>``."""
    return Markup("").join(
        Markup("<mark>{}</mark>").format(f.text) if f.matched else escape(f.text) for f in passage
    )
