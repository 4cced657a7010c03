"""The database: schema migrations, crash recovery, clear errors, the reader API; on SQLite
and PostgreSQL alike, but for what only a file has."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import anyio
import pytest
from tests import factories as f
from tests.databases import Database, raw, sqlite_only, tables

from psyche_sse.config import Settings
from psyche_sse.engine import Engine
from psyche_sse.store import Store, StoreError, queries, schema
from psyche_sse.store.connection import Connection
from psyche_sse.transcript import Status

INTERRUPTED = Status.INTERRUPTED

pytestmark = pytest.mark.anyio
NOW = "2025-01-01T00:00:00.000+00:00"


def add_round(
    conn: Connection, *, session: str, round_id: str, turns: tuple[str, ...] = ()
) -> None:
    """A round with running turns whose partial texts are ``turns``."""
    queries.reserve_ids(conn, session_id=session, ceiling=1000, title=session, now=NOW)
    queries.insert_round(
        conn, replace(f.round_started(session, round_id, "a situation"), timestamp=NOW)
    )
    for n, text in enumerate(turns):
        started = f.started(f"{round_id}-{n}", session=session, round_id=round_id)
        queries.insert_turn(conn, replace(started, timestamp=NOW), position=n)
        queries.save_partial(conn, turn_id=f"{round_id}-{n}", text=text, streaming="native")


def test_migrations_from_empty_create_the_schema(db: Database) -> None:
    store = Store.open(db)  # a file's directory is created too
    store.close()
    assert {"sessions", "rounds", "turns", "users", "api_tokens"} <= tables(db)
    assert raw(db, schema.version) == schema.VERSION
    if isinstance(db, Path):
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    Store.open(db).close()  # reopening applies nothing and keeps the data
    assert raw(db, schema.version) == schema.VERSION


def test_a_failed_migration_step_leaves_the_previous_version(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(db).close()
    bogus = "CREATE TABLE x (a INTEGER); BOGUS"
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, bogus))
    monkeypatch.setattr(schema, "VERSION", len(schema.MIGRATIONS))
    with pytest.raises(StoreError, match="syntax error") as caught:
        Store.open(db)
    assert "\n" not in str(caught.value)
    assert "x" not in tables(db)
    assert raw(db, schema.version) == schema.VERSION - 1


def test_a_newer_schema_is_refused(db: Database) -> None:
    Store.open(db).close()
    raw(db, lambda c: c.set_schema_version(schema.VERSION + 1), write=True)
    with pytest.raises(StoreError, match="newer than this program"):
        Store.open(db)


def test_processes_starting_at_once_migrate_once(db: Database) -> None:
    """Several processes opening a new database at the same moment: each step runs once
    (a second run would fail: its tables exist), and every one of them opens it."""
    opened: list[Store] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_it() -> None:
        start.wait(10)
        try:
            opened.append(Store.open(db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for store in opened:
        store.close()
    assert errors == [] and len(opened) == 4
    assert raw(db, schema.version) == schema.VERSION


def test_every_step_renders_for_each_database() -> None:
    for step in schema.MIGRATIONS:
        for dialect in ("sqlite", "postgresql"):
            assert "{" not in schema.render(step, dialect).replace("[{agent_id", "")
    users = schema.render(schema.MIGRATIONS[2], "sqlite")
    assert "name     TEXT NOT NULL UNIQUE COLLATE NOCASE," in users  # as step 3 shipped
    assert "lower(name)" not in users
    assert "lower(name)" in schema.render(schema.MIGRATIONS[2], "postgresql")
    with pytest.raises(KeyError):
        schema.render("CREATE TABLE t (a {NUMBER})", "sqlite")
    with pytest.raises(KeyError):
        schema.render("{MYSQL: ENGINE=InnoDB}", "postgresql")


def test_running_turns_are_marked_interrupted_with_their_text(db: Database) -> None:
    store = Store.open(db)
    store.run_blocking(partial(add_round, session="s", round_id="r", turns=("So far", "")))
    store.close()  # as if the process had died: nothing finished the turns

    store = Store.open(db)
    transcript = store.run_blocking(partial(queries.transcript, session_id="s"))
    history = store.run_blocking(partial(queries.council_memory, session_id="s", keep=5))
    store.close()
    assert transcript is not None and history is not None
    (rnd,) = transcript.rounds
    assert rnd.status == INTERRUPTED
    assert [(t.status, t.text) for t in rnd.turns] == [(INTERRUPTED, "So far"), (INTERRUPTED, "")]
    # The partial reply joins the agent's memory, as a stopped turn's text does.
    assert [(r.agent_id, r.text) for r in history.replies] == [("Shadow", "So far")]


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def damaged_pages(path: Path) -> None:
    """A real database whose pages after the header are overwritten."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 100,)] * 500)
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    data[200:4096] = os.urandom(4096 - 200)
    path.write_bytes(bytes(data))


@sqlite_only
@pytest.mark.parametrize(
    ("damage", "problem"),
    [(garbage, "not a SQLite database"), (damaged_pages, "corrupt")],
)
def test_a_corrupt_file_is_a_clear_error(
    db: Path, damage: Callable[[Path], None], problem: str
) -> None:
    db.parent.mkdir(parents=True)
    damage(db)
    with pytest.raises(StoreError, match=problem) as caught:
        Store.open(db)
    message = str(caught.value)
    assert str(db) in message and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_an_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError, match="cannot create its directory") as caught:
        Store.open(tmp_path / "a-file" / "psyche.db")
    assert str(tmp_path / "a-file" / "psyche.db") in str(caught.value)

    (tmp_path / "a-directory.db").mkdir()
    with pytest.raises(StoreError, match="cannot open the file"):
        Store.open(tmp_path / "a-directory.db")


def test_a_read_only_directory_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # Root writes anywhere on a disk; /proc takes no new file, not even from root.
        with pytest.raises(StoreError, match=r"/proc/psyche\.db: cannot open the file"):
            Store.open("/proc/psyche.db")
        return
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(StoreError, match=str(locked)):
            Store.open(locked / "psyche.db")
    finally:
        locked.chmod(0o700)


@sqlite_only
async def test_the_engine_does_not_start_on_a_corrupt_database(db: Path) -> None:
    await anyio.Path(db.parent).mkdir(parents=True)
    await anyio.Path(db).write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a SQLite database"):
        async with Engine(Settings(db=db)):
            pass  # pragma: no cover


async def test_list_rename_delete(db: Database) -> None:
    async with await Store.aopen(db) as store:
        for n in range(3):
            await store.write(partial(add_round, session=f"s{n}", round_id=f"r{n}", turns=("x",)))
        sessions = await store.list_sessions()
        assert {s.id for s in sessions} == {"s0", "s1", "s2"}
        assert all(s.rounds == 1 and s.last_status == "running" for s in sessions)
        assert await store.count_sessions() == 3

        assert await store.rename_session("s1", "A new name")
        assert not await store.rename_session("nobody", "x")
        transcript = await store.transcript("s1")
        assert transcript is not None and transcript.title == "A new name"

        assert await store.delete_session("s1")
        assert not await store.delete_session("s1")
        assert await store.transcript("s1") is None
        assert await store.count_sessions() == 2
        # Its rounds and turns went with it.
        left = await store.run(lambda c: c.execute("SELECT count(*) FROM turns").fetchone()[0])
        assert left == 2
        page = await store.list_sessions(limit=1, offset=1)
        assert len(page) == 1


async def test_many_writers_at_once(db: Database) -> None:
    """Writes from many tasks at once (serialised on SQLite's one connection, side by side
    on PostgreSQL's pool): none is lost."""
    async with await Store.aopen(db) as store:
        async with anyio.create_task_group() as tg:
            for n in range(20):
                turns = tuple(f"text {n}.{i}" for i in range(3))
                tg.start_soon(
                    store.write, partial(add_round, session=f"s{n}", round_id=f"r{n}", turns=turns)
                )
                tg.start_soon(store.list_sessions)
        assert await store.count_sessions() == 20
        transcript = await store.transcript("s7")
        assert transcript is not None
        assert [t.text for t in transcript.rounds[0].turns] == ["text 7.0", "text 7.1", "text 7.2"]


async def test_an_in_memory_database_keeps_nothing_but_works() -> None:
    settings = Settings(offline_tps=0, db=Path(":memory:"))
    async with Engine(settings) as engine:
        session, round_id, text = engine.rounds.prepare("I forgot a birthday")
        await engine.rounds.run(session, round_id, text)
        transcript = await engine.archive.transcript(session.id)
    assert [t.status for t in transcript.rounds[0].turns] == ["ok"] * 5
    assert not await anyio.Path(":memory:").exists()


async def test_a_new_session_is_followed_from_its_first_event(tmp_path: Path) -> None:
    """Read after the store reserved the new session's ids and before its first event is
    published: its last event id is none yet, not the reservation's mark ahead of them."""
    settings = Settings(offline_tps=0, db=tmp_path / "psyche.db")
    async with Engine(settings) as engine:
        session, round_id, text = engine.rounds.prepare("I forgot a birthday")
        mark = await engine.live.recorder.reserve(session.id, 1, session.title)
        assert mark > 1
        early = await engine.archive.transcript(session.id)
        assert early.last_event_id == 0 and early.rounds == []
        await engine.rounds.run(session, round_id, text)
        done = await engine.archive.transcript(session.id)
        assert done.last_event_id == await engine.live.bus.last_id(session.id) > 0


def test_the_size_is_what_the_database_takes(db: Database) -> None:
    store = Store.open(db)
    try:
        size = store.size()
        assert size is not None and size > 0
        assert store.size() == size  # PostgreSQL's is asked again only after a while
    finally:
        store.close()
