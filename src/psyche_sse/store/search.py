"""Full-text search over the stored sessions: their situations, stimuli and replies.

One query function, :func:`search_sessions`, in the style of :mod:`.queries`: a plain
function of a connection. It takes the words to find already checked and split
(:func:`psyche_sse.web.search.search_terms`), and never lets them act as query syntax: each
is quoted as a phrase. SQLite's FTS5 table ``search_text`` (schema step 5) is kept in step
with the rounds and turns by triggers.

On SQLite: ``MATCH`` with FTS5's phrase syntax, its ``rank`` (BM25) and ``snippet()``, and
the bare columns of a ``min()`` aggregate (taken from the row of the minimum). On PostgreSQL:
the GIN-indexed ``psyche_words`` of each column (schema step 5) matched with
``psyche_query``, ``ts_rank`` for the best row of each session and ``ts_headline`` for its
passage. Both the same: the words as phrases all required, accents and case ignored, the
passage with :data:`OPEN` and :data:`CLOSE` around the matches (read back by
:func:`passage`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..transcript import Status
from .connection import Connection
from .records import SessionSummary

# What marks a match in a passage: noncharacters, which no text is meant to hold (and a text
# that holds them anyway only moves a highlight: see :func:`passage`).
OPEN, CLOSE = "\ufdd0", "\ufdd1"
# Words of context a passage shows around its matches.
PASSAGE_TOKENS = 16


@dataclass(frozen=True, slots=True)
class Fragment:
    """A piece of a passage: ``matched`` when it is what was searched for."""

    text: str
    matched: bool


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A session that matches, with its best passage: where it is (``situation``,
    ``stimulus`` or ``reply``, and a reply's agent) and its words, the matches marked."""

    session: SessionSummary
    kind: str
    agent_id: str | None
    passage: tuple[Fragment, ...]

    @property
    def text(self) -> str:
        return "".join(f.text for f in self.passage)


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: list[SearchHit]
    total: int


def match_expression(terms: Sequence[str]) -> str:
    """The FTS5 query finding every one of ``terms``, each a quoted phrase: whatever it
    holds (quotes, ``*``, ``OR``, ``NEAR``, parentheses), it is only text to find."""
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


def passage(snippet: str) -> tuple[Fragment, ...]:
    """A snippet with :data:`OPEN` and :data:`CLOSE` around its matches, as fragments.

    Markers out of order (a text holding one itself) are dropped, so the fragments always
    alternate cleanly whatever the text holds."""
    fragments: list[Fragment] = []
    matched = False
    current: list[str] = []
    for ch in snippet:
        if ch in (OPEN, CLOSE):
            if (ch == OPEN) != matched:
                if current:
                    fragments.append(Fragment("".join(current), matched))
                current = []
                matched = not matched
            continue
        current.append(ch)
    if current:
        fragments.append(Fragment("".join(current), matched))
    return tuple(fragments)


def search_sessions(
    conn: Connection,
    *,
    terms: Sequence[str],
    owner: int | None = None,
    limit: int = 20,
    offset: int = 0,
) -> SearchPage:
    """The sessions of ``owner`` (None: everyone's) whose situations, stimuli or replies hold
    every one of ``terms``, the most recently active first, ``limit`` from ``offset``; and how
    many there are in all. Each hit carries the session's best passage."""
    if not terms:
        return SearchPage([], 0)
    find = _postgres if conn.dialect == "postgresql" else _sqlite
    total, best, snippets = find(conn, terms, owner, limit, offset)
    hits = [
        SearchHit(
            session=SessionSummary(
                id=row[0],
                title=row[4],
                created=row[5],
                updated=row[6],
                rounds=row[7],
                last_status=None if row[8] is None else Status(row[8]),
            ),
            kind=row[2],
            agent_id=row[3],
            passage=passage(snippets.get(row[1], "")),
        )
        for row in best
    ]
    return SearchPage(hits, total)


# A hit's session as the list shows it, after its session id, document, kind and agent.
_SESSION_COLUMNS = (
    " s.title, s.created, s.updated,"
    " (SELECT count(*) FROM rounds r WHERE r.session_id = s.id),"
    " (SELECT r.status FROM rounds r WHERE r.session_id = s.id ORDER BY r.idx DESC LIMIT 1)"
)
# How many sessions in all; the page's rows; each row's passage by its document.
Found = tuple[int, list[Any], dict[Any, str]]


def _sqlite(
    conn: Connection, terms: Sequence[str], owner: int | None, limit: int, offset: int
) -> Found:
    match = match_expression(terms)
    mine, owned = ("AND s.owner = ?", (owner,)) if owner is not None else ("", ())
    total = int(
        conn.execute(
            "SELECT count(DISTINCT search_text.session_id) FROM search_text"
            " JOIN sessions s ON s.id = search_text.session_id"
            f" WHERE search_text MATCH ? {mine}",
            (match, *owned),
        ).fetchone()[0]
    )
    if not total:
        return 0, [], {}
    # The best row of each session: SQLite takes the bare columns from the row of min().
    best = conn.execute(
        f"SELECT b.session_id, b.doc, b.kind, b.agent_id, {_SESSION_COLUMNS}"
        " FROM (SELECT session_id, rowid AS doc, kind, agent_id, min(rank) AS score"
        "       FROM search_text WHERE search_text MATCH ? GROUP BY session_id) b"
        f" JOIN sessions s ON s.id = b.session_id {mine}"
        " ORDER BY s.updated DESC, s.id LIMIT ? OFFSET ?",
        (match, *owned, limit, offset),
    ).fetchall()
    docs = [row[1] for row in best]
    marks = ", ".join("?" * len(docs))
    snippets = dict(
        conn.execute(
            "SELECT rowid, snippet(search_text, 0, ?, ?, '…', ?) FROM search_text"
            f" WHERE search_text MATCH ? AND rowid IN ({marks})",
            (OPEN, CLOSE, PASSAGE_TOKENS, match, *docs),
        ).fetchall()
    )
    return total, best, snippets


# Every text that can be found, with what it is: written so that each branch's condition is
# on the indexed expression, ``psyche_words(column)``.
_PG_TEXTS = """
    SELECT r.session_id, 'situation:' || r.id AS doc, 'situation' AS kind,
           NULL::text AS agent_id, r.situation AS body
    FROM rounds r WHERE psyche_words(r.situation) @@ {query}
    UNION ALL
    SELECT r.session_id, 'stimulus:' || r.id, 'stimulus', NULL, r.stimulus
    FROM rounds r WHERE psyche_words(r.stimulus) @@ {query}
    UNION ALL
    SELECT t.session_id, 'turn:' || t.id, 'reply', t.agent_id, t.text
    FROM turns t WHERE psyche_words(t.text) @@ {query}
"""


def _postgres(
    conn: Connection, terms: Sequence[str], owner: int | None, limit: int, offset: int
) -> Found:
    # Every term a phrase, all required; the same query three times, once a branch.
    query = "(" + " && ".join("psyche_query(?)" for _ in terms) + ")"
    texts = _PG_TEXTS.format(query=query)
    words = tuple(terms) * 3
    mine, owned = ("AND s.owner = ?", (owner,)) if owner is not None else ("", ())
    total = int(
        conn.execute(
            f"SELECT count(DISTINCT m.session_id) FROM ({texts}) m"
            f" JOIN sessions s ON s.id = m.session_id WHERE TRUE {mine}",
            (*words, *owned),
        ).fetchone()[0]
    )
    if not total:
        return 0, [], {}
    options = f"StartSel={OPEN}, StopSel={CLOSE}, MaxFragments=1, MaxWords={PASSAGE_TOKENS}"
    rows = conn.execute(
        "SELECT b.session_id, b.doc, b.kind, b.agent_id,"
        f" {_SESSION_COLUMNS}, ts_headline('simple', b.body, {query}, ?)"
        " FROM (SELECT DISTINCT ON (m.session_id) m.*"
        f"       FROM ({texts}) m"
        f"       ORDER BY m.session_id, ts_rank(psyche_words(m.body), {query}) DESC, m.doc) b"
        f" JOIN sessions s ON s.id = b.session_id WHERE TRUE {mine}"
        " ORDER BY s.updated DESC, s.id LIMIT ? OFFSET ?",
        (*terms, options, *words, *terms, *owned, limit, offset),
    ).fetchall()
    best = [tuple(row[:9]) for row in rows]
    snippets: dict[Any, str] = {row[1]: row[9] for row in rows}
    return total, best, snippets
