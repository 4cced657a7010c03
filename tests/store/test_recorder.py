"""The recorder: events in, rows out, with partial text saved on a timer, not per delta."""

from __future__ import annotations

import anyio
import pytest
from tests import factories as f
from tests.databases import Database

from psyche_sse.bus import MemoryBus
from psyche_sse.events import Event, Payload
from psyche_sse.sentiment import SentimentScores
from psyche_sse.store import Recorder, Store, queries
from psyche_sse.store.connection import Connection
from psyche_sse.transcript import Status

RUNNING = Status.RUNNING

pytestmark = pytest.mark.anyio


class Feed:
    """Publishes one session's events to a bus and hands them to the recorder."""

    def __init__(self, recorder: Recorder, session: str = "s", round_id: str = "r") -> None:
        self.recorder = recorder
        self.bus = MemoryBus()
        self.session = session
        self.round = round_id

    async def __call__(self, payload: Payload) -> Event:
        await self.recorder.reserve(self.session, await self.bus.last_id(self.session) + 1, "title")
        event = await self.bus.publish(payload)
        self.recorder.observe(event)
        return event

    async def round_started(self) -> None:
        await self(f.round_started(self.session, self.round, agents=()))

    async def turn_started(self, turn: str) -> None:
        await self(f.started(turn, session=self.session, round_id=self.round))

    async def delta(self, turn: str, text: str) -> None:
        await self(f.update(text, turn, 0.5, session=self.session, round_id=self.round))


async def stored_text(store: Store, turn: str) -> tuple[str, str]:
    return await store.run(
        lambda c: c.execute("SELECT status, text FROM turns WHERE id = ?", (turn,)).fetchone()
    )


async def test_deltas_are_saved_on_the_timer_not_one_by_one(db: Database) -> None:
    async with await Store.aopen(db) as store:
        async with Recorder(store, save_interval=3600) as recorder:
            feed = Feed(recorder)
            await feed.round_started()
            await feed.turn_started("t")
            await recorder.flush()
            for word in ["Once ", "upon ", "a ", "time"]:
                await feed.delta("t", word)
            await anyio.wait_all_tasks_blocked()
            # No structural event and no timer yet: the deltas are only in memory.
            assert await stored_text(store, "t") == (RUNNING, "")
            await recorder.flush()
            assert await stored_text(store, "t") == (RUNNING, "Once upon a time")

        async with Recorder(store, save_interval=0.05) as recorder:
            feed = Feed(recorder, round_id="r2")
            await feed.round_started()
            await feed.turn_started("t2")
            await feed.delta("t2", "Saved by the timer")
            with anyio.fail_after(5):  # the condition lives in the database: poll it
                while await stored_text(store, "t2") != (RUNNING, "Saved by the timer"):  # noqa: ASYNC110
                    await anyio.sleep(0.01)


async def test_another_turn_starting_does_not_save_the_running_text(db: Database) -> None:
    # With many rounds at once, turns start and end many times a second: each wakes the
    # writer, and the running turns' text waits for its timer (or a read) all the same.
    async with await Store.aopen(db) as store, Recorder(store, save_interval=3600) as recorder:
        feed = Feed(recorder)
        await feed.round_started()
        await feed.turn_started("t")
        await recorder.flush()
        await feed.delta("t", "Half a thought")
        await feed.turn_started("t2")

        def started(c: Connection) -> bool:
            return c.execute("SELECT 1 FROM turns WHERE id = 't2'").fetchone() is not None

        with anyio.fail_after(5):  # the condition lives in the database: poll it
            while not await store.run(started):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert await stored_text(store, "t") == (RUNNING, "")
        await recorder.flush()  # a read sees everything observed before it
        assert await stored_text(store, "t") == (RUNNING, "Half a thought")


async def test_a_read_sees_exactly_the_events_up_to_its_id(db: Database) -> None:
    async with await Store.aopen(db) as store, Recorder(store) as recorder:
        feed = Feed(recorder)
        await feed.round_started()
        await feed.turn_started("t")
        await feed.delta("t", "Hello")
        transcript = await recorder.call(
            "s", lambda c, as_of: queries.transcript(c, session_id="s", as_of=as_of)
        )
        assert transcript is not None
        assert transcript.last_event_id == await feed.bus.last_id("s") == 3
        assert transcript.rounds[0].turns[0].text == "Hello"


async def test_another_process_reads_the_session_as_of_what_was_saved(db: Database) -> None:
    async with await Store.aopen(db) as store, Recorder(store, save_interval=3600) as recorder:
        feed = Feed(recorder)
        await feed.round_started()
        await feed.turn_started("t")
        await feed.delta("t", "Hello ")
        await recorder.flush()
        await feed.delta("t", "again")  # published, not saved yet
        await feed.turn_started("u")  # saved at once; the text is not due yet
        with anyio.fail_after(5):  # the condition lives in the database: poll it
            while await stored_text(store, "u") is None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        # A process that does not run the session reads it as saved: up to event 3, with
        # the text those events made; events 4 and 5 come to it from the bus.
        async with Recorder(store) as elsewhere:
            seen = await elsewhere.transcript("s", saved=True)
            assert seen is not None
            assert seen.last_event_id == 3
            assert seen.rounds[0].turns[0].text == "Hello "
            await recorder.flush()
            seen = await elsewhere.transcript("s", saved=True)
            assert seen is not None
            assert (seen.last_event_id, seen.rounds[0].turns[0].text) == (5, "Hello again")


async def test_event_ids_are_reserved_ahead_in_blocks(db: Database) -> None:
    async with await Store.aopen(db) as store:
        async with Recorder(store, id_block=10) as recorder:
            feed = Feed(recorder)
            await feed.round_started()
            await feed.turn_started("t")
            for n in range(12):
                await feed.delta("t", f"{n} ")
        history = await store.council_memory("s", keep=5)
        assert history is not None
        # 14 events published; the stored mark is always above the newest id (event 10
        # found the first block's mark, 10, not above it, and reserved up to 19).
        assert await feed.bus.last_id("s") == 14 and history.event_hwm > 14
        assert history.event_hwm == 19


async def test_a_complete_turn_stores_every_field(db: Database) -> None:
    async with await Store.aopen(db) as store:
        async with Recorder(store) as recorder:
            feed = Feed(recorder)
            await feed.round_started()
            await feed.turn_started("t")
            await feed.delta("t", "Partial")
            await feed(
                f.complete(
                    "[Shadow is experiencing technical difficulties]",
                    "t",
                    status=Status.ERROR,
                    interaction_count=0,
                    usage={"total_tokens": 3},
                    duration_ms=120,
                    first_token_ms=40,
                    error="timed out",
                    error_class="Timeout",
                    reasoning="hm",
                )
            )
            await feed(f.round_complete(status=Status.ERROR, duration_ms=130, turns=1))
        transcript = await store.transcript("s")
        history = await store.council_memory("s", keep=5)
    assert transcript is not None and history is not None
    (rnd,) = transcript.rounds
    assert (rnd.status, rnd.duration_ms, rnd.situation) == ("error", 130, "A situation")
    (turn,) = rnd.turns
    assert turn.text == "[Shadow is experiencing technical difficulties]"
    assert (turn.status, turn.error, turn.error_class, turn.reasoning) == (
        "error",
        "timed out",
        "Timeout",
        "hm",
    )
    assert turn.usage == {"total_tokens": 3} and turn.sentiment == SentimentScores()
    assert (turn.duration_ms, turn.first_token_ms, turn.streaming) == (120, 40, "native")
    # The council did not count it (interaction_count stayed 0): not part of the memory.
    assert history.replies == ()
