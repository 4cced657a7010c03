"""Full-text search in the store: the index follows the rounds and turns as they are
written, a database from before the index is indexed when it is migrated, what is searched
for is only ever text, and the sessions list's preview line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import partial

import pytest
from tests import factories as f
from tests.databases import Database, old_database, raw

from psyche_sse.store import Store, queries, schema
from psyche_sse.store.connection import Connection
from psyche_sse.store.previews import Preview, previews, shorten
from psyche_sse.store.search import CLOSE, OPEN, Fragment, passage, search_sessions

NOW = "2025-01-01T00:00:00.000+00:00"


def search_step() -> int:
    [number] = [n for n, step in enumerate(schema.MIGRATIONS, 1) if "fts5" in step]
    return number


def write_session(
    conn: Connection,
    session: str,
    situation: str,
    replies: list[str],
    *,
    stimulus: str | None = None,
    owner: int | None = None,
) -> None:
    """A finished round of ``session``: the situation, a stimulus, a reply per text."""
    queries.reserve_ids(conn, session_id=session, ceiling=1000, title=session, now=NOW, owner=owner)
    started = replace(f.round_started(session, f"{session}-r", situation), stimulus=stimulus)
    queries.insert_round(conn, replace(started, timestamp=NOW))
    for n, text in enumerate(replies):
        turn = f"{session}-t{n}"
        queries.insert_turn(
            conn,
            replace(
                f.started(turn, f.AGENT_IDS[n], session=session, round_id=f"{session}-r"),
                timestamp=NOW,
            ),
            position=n,
        )
        queries.save_partial(conn, turn_id=turn, text=text, streaming="native")


@pytest.fixture
def store(db: Database) -> Iterator[Store]:
    opened = Store.open(db)
    yield opened
    opened.close()


def found(store: Store, *terms: str, owner: int | None = None) -> list[tuple[str, str]]:
    page = store.run_blocking(partial(search_sessions, terms=terms, owner=owner))
    assert page.total == len(page.hits)
    return [(h.session.id, h.kind) for h in page.hits]


def test_replies_situations_and_stimuli_are_found_as_they_are_written(store: Store) -> None:
    store.write_now(
        partial(
            write_session,
            session="s1",
            situation="My sister borrowed the car",
            replies=["Envy hides behind the polite smile.", "The neighbours are watching."],
            stimulus="A storm breaks",
        )
    )
    assert found(store, "envy") == [("s1", "reply")]
    assert found(store, "sister") == [("s1", "situation")]
    assert found(store, "storm") == [("s1", "stimulus")]
    # Every word must be there; case and accents do not matter.
    assert found(store, "ENVY", "smile") == [("s1", "reply")]
    assert found(store, "envy", "piano") == []
    store.write_now(
        partial(queries.save_partial, turn_id="s1-t0", text="Jealousy, café.", streaming=None)
    )
    assert found(store, "envy") == []
    assert found(store, "cafe") == [("s1", "reply")]
    store.write_now(partial(queries.delete_session, session_id="s1"))
    assert found(store, "sister") == found(store, "cafe") == []
    if store.dialect == "sqlite":  # the index's own bookkeeping goes with the session
        left = store.run_blocking(
            lambda c: c.execute("SELECT count(*) FROM search_refs").fetchone()
        )
        assert left == (0,)


def test_each_owner_finds_only_their_sessions(store: Store) -> None:
    store.write_now(
        lambda c: c.executemany(
            "INSERT INTO users (id, name, password, created) VALUES (?, ?, 'x', ?)",
            [(1, "one", NOW), (2, "two", NOW)],
        )
    )
    for session, owner in (("mine", 1), ("theirs", 2)):
        store.write_now(
            partial(
                write_session, session=session, situation="the lighthouse", replies=[], owner=owner
            )
        )
    assert found(store, "lighthouse", owner=1) == [("mine", "situation")]
    assert found(store, "lighthouse", owner=2) == [("theirs", "situation")]
    assert sorted(found(store, "lighthouse")) == [("mine", "situation"), ("theirs", "situation")]


@pytest.mark.parametrize(
    "term",
    ['"', '""', "*", "OR", "NEAR(", "a)", "body:x", "^start", "-x", "x AND", "'; DROP", "\\"],
)
def test_query_syntax_is_only_text(store: Store, term: str) -> None:
    store.write_now(
        partial(write_session, session="s", situation="or and not near x start", replies=[])
    )
    # No error, whatever it holds; the words it holds are found as words.
    page = store.run_blocking(partial(search_sessions, terms=[term]))
    assert page.total in (0, 1)
    assert found(store, "OR") == [("s", "situation")]
    assert found(store, "NEAR(") == [("s", "situation")]


def test_a_passage_marks_its_matches() -> None:
    assert passage(f"a {OPEN}b{CLOSE} c") == (
        Fragment("a ", False),
        Fragment("b", True),
        Fragment(" c", False),
    )
    # Markers out of order (a text holding one) never unbalance it.
    assert passage(f"{CLOSE}a{OPEN}b{OPEN}c") == (Fragment("a", False), Fragment("bc", True))


def test_a_database_from_before_search_is_indexed_when_migrated(db: Database) -> None:
    old_database(db, search_step() - 1)

    def before_search(conn: Connection) -> None:
        write_session(
            conn, "old1", "The old orchard", ["Resentment grows in the shade."], stimulus="Frost"
        )
        write_session(conn, "old2", "A quiet harbour", ["Nothing moves.", "Resentment too."])

    raw(db, before_search, write=True)

    store = Store.open(db)
    try:
        assert store.run_blocking(schema.version) == schema.VERSION
        assert found(store, "orchard") == [("old1", "situation")]
        assert found(store, "frost") == [("old1", "stimulus")]
        assert sorted(found(store, "resentment")) == [("old1", "reply"), ("old2", "reply")]
        # The triggers work on the migrated rows as on new ones, and new rows get new
        # numbers.
        store.write_now(
            partial(queries.save_partial, turn_id="old2-t0", text="Waves.", streaming=None)
        )
        store.write_now(
            partial(
                write_session, session="new", situation="orchard again", replies=["Waves as well."]
            )
        )
        assert sorted(found(store, "waves")) == [("new", "reply"), ("old2", "reply")]
        assert sorted(found(store, "orchard")) == [("new", "situation"), ("old1", "situation")]
    finally:
        store.close()


def test_the_preview_is_the_newest_reply_or_the_situation(store: Store) -> None:
    store.write_now(
        partial(
            write_session,
            session="said",
            situation="The situation",
            replies=["First reply.", "**Second** reply, <b>newest</b>."],
        )
    )
    store.write_now(
        partial(write_session, session="quiet", situation="Only a  situation", replies=[])
    )
    got = store.run_blocking(partial(previews, session_ids=["said", "quiet", "nothing"]))
    assert got == {
        "said": Preview(f.AGENT_IDS[1], "**Second** reply, <b>newest</b>."),
        "quiet": Preview(None, "Only a  situation"),
    }
    assert got["said"].line() == f"{f.AGENT_IDS[1]}: Second reply, <b>newest</b>."
    assert got["quiet"].line() == "Only a situation"


def test_a_preview_is_cut_at_a_word() -> None:
    text = "The council weighs every word of the situation before anyone answers it"
    cut = shorten(text, 30)
    assert cut == "The council weighs every word…"
    assert len(cut) <= 30
    assert shorten("short", 30) == "short"
    assert shorten("x" * 50, 10) == "x" * 9 + "…"
