"""Model text to safe HTML: markdown rendered with raw HTML off, then sanitised.

Raw HTML in the text is shown as text (markdown-it escapes it); nh3 then keeps only the
tags markdown produces, and links only with the targets :mod:`psyche_sse.links` allows, so
nothing a model or a person writes can run in the page.
"""

from __future__ import annotations

from types import MappingProxyType

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

from ..links import SAFE_SCHEMES

_ALLOWED_TAGS = frozenset(
    {
        "p",
        "br",
        "hr",
        "em",
        "strong",
        "s",
        "code",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "a",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    }
)
_ALLOWED_ATTRIBUTES = MappingProxyType(
    {
        "a": frozenset({"href", "title"}),
        "ol": frozenset({"start"}),
        "th": frozenset({"align"}),
        "td": frozenset({"align"}),
    }
)


class MarkdownRenderer:
    def __init__(self) -> None:
        self._md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(
            ["table", "strikethrough"]
        )

    def __call__(self, text: str) -> Markup:
        html = self._md.render(text)
        clean = nh3.clean(
            html,
            tags=_ALLOWED_TAGS,
            attributes=dict(_ALLOWED_ATTRIBUTES),  # nh3 takes a real dict, not a mapping
            url_schemes=set(SAFE_SCHEMES),
            link_rel="noopener noreferrer nofollow",
        )
        return Markup(clean)  # sanitised just above
