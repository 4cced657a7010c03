"""Which links text may carry, for the page and the exports alike: one rule.

A link keeps its target when it is relative or its scheme is one of
:data:`SAFE_SCHEMES`; any other (``javascript:``, ``vbscript:``, ``data:``, ``file:``…)
could run a script or load a document in whatever shows the text, so it goes.
"""

from __future__ import annotations

import re

from markdown_it.helpers import parseLinkDestination

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})

# What a browser removes before it reads a URL's scheme: tabs and newlines anywhere,
# control characters and spaces at either end (the WHATWG URL standard).
_REMOVED_ANYWHERE = re.compile(r"[\t\n\r]")
_ENDS = "".join(chr(c) for c in range(0x21))
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")


def is_safe_url(url: str) -> bool:
    """True for a relative URL or one with a scheme in :data:`SAFE_SCHEMES`."""
    match = _SCHEME.match(_REMOVED_ANYWHERE.sub("", url).strip(_ENDS))
    return match is None or match.group(1).lower() in SAFE_SCHEMES


# Where a Markdown link's destination starts: after ``](`` (inline links and images)
# and after ``]:`` (reference definitions), each with the blanks CommonMark allows. A
# superset: the rest of the text is left as it is.
_DESTINATION = re.compile(r"\]\([ \t]*\n?[ \t]*|\]:[ \t]*\n?[ \t]*")
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^<>\x00-\x20]*)>")
NEUTRAL_URL = "#"


def neutralise_markdown_links(markdown: str) -> str:
    """``markdown`` with every link whose target :func:`is_safe_url` refuses pointing to
    ``#`` instead (``[click](javascript:…)`` -> ``[click](#)``); the words stay.

    Destinations are read as a Markdown renderer reads them (backslash escapes and
    character references decoded), so neither hides a scheme.
    """
    out: list[str] = []
    done = 0
    for match in _DESTINATION.finditer(markdown):
        start = match.end()
        if start < done:
            continue
        found = parseLinkDestination(markdown, start, len(markdown))
        if found.ok and not is_safe_url(found.str):
            out += [markdown[done:start], NEUTRAL_URL]
            done = found.pos
    out.append(markdown[done:])
    return _AUTOLINK.sub(
        lambda m: m.group(0) if is_safe_url(m.group(1)) else m.group(1), "".join(out)
    )
