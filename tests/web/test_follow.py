"""The SSE writer in process: merging, pacing, a reader that falls behind, shared bytes."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from psyche_sse import events as ev
from psyche_sse.bus import MemoryBus, Signal, Timers
from psyche_sse.events import Event
from psyche_sse.transcript import Round, RoundState, Status, Transcript
from psyche_sse.web import streams
from psyche_sse.web.security import SERVER_SEND
from psyche_sse.web.streams import JSON, StreamHub, run_done, runs
from tests import factories as f
from tests.web.sse import from_bytes

pytestmark = pytest.mark.anyio

SID, RID = "s1", "r1"


def update(text: str, turn: str = "t1", progress: float = 0.1) -> ev.AgentUpdate:
    return f.update(text, turn, progress, session=SID, round_id=RID)


def started(turn: str = "t1") -> ev.AgentStarted:
    return f.started(turn, session=SID, round_id=RID)


def complete(turn: str = "t1") -> ev.AgentComplete:
    return f.complete("done", turn, session=SID, round_id=RID)


async def no_history() -> Event:
    raise AssertionError("this stream should not need the stored history")


def follow(
    bus: MemoryBus,
    session_id: str,
    after: int,
    fmt: streams.Format,
    *,
    hub: StreamHub | None = None,
    **kwargs: Any,
) -> AsyncIterator[bytes]:
    """A stream of its own hub, unless it shares one with others."""
    kwargs.setdefault("history", no_history)
    kwargs.setdefault("heartbeat", 15.0)
    return streams.follow(hub or StreamHub(), bus, session_id, after, fmt, **kwargs)


def parse(chunk: bytes) -> tuple[int, str, dict[str, Any]] | None:
    """The first event of a chunk the stream wrote: (id, name, data); None for none."""
    events = [sse for sse in from_bytes(chunk) if sse.data]
    if not events:
        return None
    return int(events[0].id), events[0].event, json.loads(events[0].data)


_pending: dict[int, list[tuple[int, str, dict[str, Any]]]] = {}


async def read(stream: AsyncIterator[bytes], n: int) -> list[tuple[int, str, dict[str, Any]]]:
    """The next ``n`` messages (a chunk may hold several: a batch is written at once)."""
    pending = _pending.setdefault(id(stream), [])
    while len(pending) < n:
        chunk = await anext(stream)
        pending += [
            (int(sse.id), sse.event, json.loads(sse.data)) for sse in from_bytes(chunk) if sse.data
        ]
    out, pending[:] = pending[:n], pending[n:]
    return out


def test_runs_merge_consecutive_deltas_of_one_turn_only() -> None:
    batch = [
        Event(1, started("a")),
        Event(2, update("one ", "a")),
        Event(3, update("two ", "a", 0.2)),
        Event(4, update("other", "b")),
        Event(5, update("three", "a", 0.3)),
    ]
    out = [ev.merge_updates(run) for run in runs(batch)]
    assert [e.id for e in out] == [1, 3, 4, 5]
    merged = out[1].data
    assert merged["partial_content"] == "one two "
    assert merged["progress"] == 0.2
    assert merged["metadata"]["chunk_size"] == len("one two ")


async def test_a_reader_that_falls_behind_gets_one_merged_delta() -> None:
    bus = MemoryBus()
    await bus.publish(started())
    stream = follow(bus, SID, 0, JSON, max_per_second=30)
    assert (await anext(stream)).startswith(b"retry: ")
    assert (await read(stream, 1))[0][1] == "agent_processing_started"
    # The reader looks away; the publisher goes on, never waiting for it.
    with anyio.fail_after(1):
        for i in range(500):
            await bus.publish(update(f"{i} "))
    (msg,) = await read(stream, 1)
    assert msg[0] == 501
    assert msg[2]["partial_content"] == "".join(f"{i} " for i in range(500))
    await stream.aclose()


async def test_a_fast_model_is_paced_to_the_limit() -> None:
    bus = MemoryBus()
    await bus.publish(started())
    stream = follow(bus, SID, 0, JSON, max_per_second=20)
    await read(stream, 1)
    text: list[str] = []
    messages = 0

    async def model() -> None:
        for i in range(200):  # 200 deltas in about half a second
            await bus.publish(update(f"{i} "))
            await anyio.sleep(0.0025)
        await bus.publish(complete())

    began = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(model)
        while True:
            (msg,) = await read(stream, 1)
            if msg[1] == "agent_processing_complete":
                break
            messages += 1
            text.append(msg[2]["partial_content"])
    took = anyio.current_time() - began
    assert "".join(text) == "".join(f"{i} " for i in range(200))
    assert messages <= took * 20 + 2
    await stream.aclose()


async def test_each_event_is_encoded_once_and_shared() -> None:
    bus = MemoryBus()
    event = await bus.publish(started())
    readers = [follow(bus, SID, 0, JSON, max_per_second=30) for _ in range(2)]
    chunks = []
    for stream in readers:
        await anext(stream)
        chunks.append(await anext(stream))
        await stream.aclose()
    assert chunks[0] is chunks[1] is JSON(event)


async def test_a_run_stream_ends_with_its_last_round_state() -> None:
    bus = MemoryBus()
    for index in (1, 2):
        await bus.publish(f.round_started(SID, f"r{index}", index=index))
        await bus.publish(f.round_complete(SID, f"r{index}", index=index))
        await bus.publish(f.state(SID, f"r{index}", round_index=index))
    await bus.publish(f.round_started(SID, "r3", index=3))
    chunks = [c async for c in follow(bus, SID, 0, JSON, max_per_second=30, until=run_done(1, 2))]
    messages = b"".join(chunks).split(b"\n\n")[:-1]
    assert len(messages) == 7  # the retry field, then the two rounds
    assert b"event: conversation_state" in messages[-1]


def test_a_run_ends_with_a_stopped_round_or_a_history_that_shows_its_end() -> None:
    done = run_done(2, 3)  # rounds 2, 3 and 4 of the session

    def ended(index: int, status: str) -> bool:
        """A round's end as the stream sees it: its round_complete, then its state."""
        complete = Event(1, f.round_complete(index=index, status=Status(status)))  # type: ignore[arg-type]
        assert not done(complete)
        return done(Event(2, f.state(round_index=index)))

    def history(*rounds: tuple[int, str]) -> Event:
        state = RoundState(metrics=f.metrics())
        transcript = Transcript(
            id=SID,
            rounds=[
                Round(
                    id=f"r{i}",
                    index=i,
                    situation="",
                    started="",
                    status=Status(s),
                    state=None if s == "running" else state,
                )
                for i, s in rounds
            ],
        )
        return Event(1, f.history(transcript))

    assert not ended(1, "cancelled")  # a round before the run
    assert not ended(3, "error")
    assert ended(3, "cancelled")
    assert ended(4, "ok")
    done = run_done(2, 3)
    assert not done(history((1, "ok"), (2, "ok"), (3, "running")))
    assert done(history((1, "ok"), (2, "ok"), (3, "ok"), (4, "error")))
    assert done(history((1, "ok"), (2, "cancelled")))
    assert done(history((1, "ok"), (2, "interrupted")))


async def test_a_merged_message_is_encoded_once_for_all_readers() -> None:
    bus = MemoryBus()
    await bus.publish(started())
    hub = StreamHub()
    readers = [follow(bus, SID, 0, JSON, max_per_second=30, hub=hub) for _ in range(3)]
    for stream in readers:
        await read(stream, 1)
    for i in range(5):
        await bus.publish(update(f"{i} "))
    chunks = [await anext(stream) for stream in readers]
    assert chunks[0] is chunks[1] is chunks[2]
    assert parse(chunks[0]) is not None and parse(chunks[0])[2]["partial_content"] == "0 1 2 3 4 "
    for stream in readers:
        await stream.aclose()


async def test_read_waits_then_returns_nothing_and_none_once_closed() -> None:
    bus = MemoryBus()
    assert await bus.read(SID, 0, 0.01) == []
    event = await bus.publish(started())
    assert await bus.read(SID, 0, 0.01) == [event]
    async with anyio.create_task_group() as tg:
        results: list[Any] = []

        async def reader() -> None:
            results.append(await bus.read(SID, event.id, 10))

        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        bus.close(SID)
    assert results == [None]


async def test_a_quiet_stream_sends_heartbeats() -> None:
    bus = MemoryBus()
    stream = follow(bus, SID, 0, JSON, max_per_second=30, heartbeat=0.01)
    assert (await anext(stream)).startswith(b"retry: ")
    with anyio.fail_after(2):
        assert await anext(stream) == b": heartbeat\n\n"
        assert await anext(stream) == b": heartbeat\n\n"
    await stream.aclose()


async def test_shutdown_ends_open_streams_at_once() -> None:
    bus = MemoryBus()
    hub = StreamHub()
    stream = follow(bus, SID, 0, JSON, max_per_second=30, heartbeat=60, hub=hub)
    await anext(stream)
    async with anyio.create_task_group() as tg:
        ended = anyio.Event()

        async def drain() -> None:
            async for _ in stream:
                pass
            ended.set()

        tg.start_soon(drain)
        await anyio.wait_all_tasks_blocked()
        hub.shutdown()
        with anyio.fail_after(1):
            await ended.wait()
    # Another app's streams, on the same bus, are not its to end.
    other = follow(bus, SID, 0, JSON, max_per_second=30, heartbeat=0.01)
    await anext(other)
    with anyio.fail_after(2):
        assert await anext(other) == b": heartbeat\n\n"
    await other.aclose()


async def test_a_reader_behind_a_closed_log_gets_its_tail_then_the_end() -> None:
    bus = MemoryBus()
    first = await bus.publish(started())
    last = await bus.publish(complete())
    async with bus.watch(SID):  # a follower, still behind
        bus.close(SID)
        assert await bus.read(SID, first.id, 1) == [last]
        assert await bus.read(SID, last.id, 1) is None
    # With nobody left to read it, a closed log is not kept.
    await bus.publish(f.started(session="other"))
    bus.close("other")
    assert await bus.history("other") == [] and await bus.read("other", 0, 0.01) == []


def stored_history(bus: MemoryBus, *, publish_meanwhile: int = 0) -> Any:
    """A ``history`` callback: a snapshot at the bus's newest event, read while the model
    publishes ``publish_meanwhile`` more deltas (a slow database under a fast model)."""
    calls: list[int] = []

    async def history() -> Event:
        last = await bus.last_id(SID)
        calls.append(last)
        for i in range(publish_meanwhile):
            await bus.publish(update(f"m{i} "))
        return Event(last, f.history(Transcript(id=SID, last_event_id=last)))

    history.calls = calls  # type: ignore[attr-defined]
    return history


async def test_a_reader_further_behind_than_the_bus_keeps_gets_the_history_not_a_gap() -> None:
    bus = MemoryBus(history_limit=100)
    await bus.publish(started())
    history = stored_history(bus)
    stream = follow(bus, SID, 0, JSON, max_per_second=30, history=history)
    await anext(stream)
    assert (await read(stream, 1))[0][0] == 1
    for i in range(300):  # the oldest 200 of these are gone before the reader looks again
        await bus.publish(update(f"{i} "))
    (snapshot,) = await read(stream, 1)
    assert snapshot[:2] == (301, "session_history")
    await bus.publish(update("next"))
    (msg,) = await read(stream, 1)
    assert msg[0] == 302 and msg[2]["partial_content"] == "next"
    await stream.aclose()


async def test_events_published_while_the_history_is_read_are_all_delivered() -> None:
    # 250 deltas land while the history is read, more than the 100 the bus keeps: they are
    # kept for this reader until it takes them, so the history and the live events join.
    bus = MemoryBus(history_limit=100)
    for i in range(150):
        await bus.publish(update(f"{i} "))
    history = stored_history(bus, publish_meanwhile=250)
    stream = follow(bus, SID, 1, JSON, max_per_second=30, history=history)
    await anext(stream)
    snapshot, merged = await read(stream, 2)
    assert snapshot[:2] == (150, "session_history")
    assert merged[0] == 400
    assert merged[2]["partial_content"] == "".join(f"m{i} " for i in range(250))
    assert len(await bus.history(SID)) == 100  # and the bus is back to its limit after
    await bus.publish(update("x"))
    assert len(await bus.history(SID)) == 100
    await stream.aclose()


async def test_a_cursor_the_bus_cannot_replay_from_gets_the_history_first() -> None:
    bus = MemoryBus(history_limit=100)
    for i in range(150):
        await bus.publish(update(f"{i} "))
    history = stored_history(bus)
    for after in (10, 999):  # older than the bus keeps; beyond the newest
        stream = follow(bus, SID, after, JSON, max_per_second=30, history=history)
        await anext(stream)
        assert (await read(stream, 1))[0][:2] == (150, "session_history")
        await stream.aclose()
    replay = follow(bus, SID, 140, JSON, max_per_second=30, history=history)
    await anext(replay)
    assert (await read(replay, 1))[0][0] == 150  # within what it keeps: a plain replay
    await replay.aclose()
    assert history.calls == [150, 150]


async def test_a_subscriber_never_misses_an_event_however_far_behind() -> None:
    bus = MemoryBus(history_limit=10)
    await bus.publish(started())
    subscription = bus.subscribe(SID)
    assert [e.id for e in await anext(subscription)] == [1]
    for i in range(50):
        await bus.publish(update(f"{i} "))
    assert [e.id for e in await anext(subscription)] == list(range(2, 52))
    await subscription.aclose()
    await bus.publish(update("x"))
    assert len(await bus.history(SID)) == 10


async def test_an_event_stream_stops_once_its_client_has_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streams, "DISCONNECT_CHECK_SECONDS", 0.0)
    closed = anyio.Event()

    async def source() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b": heartbeat\n\n"
        finally:
            closed.set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "headers": []}
    with anyio.fail_after(2):
        await streams.sse_response(source())(scope, receive, send)
    assert closed.is_set()
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


async def test_an_event_stream_body_goes_to_the_server_and_ends_with_its_request() -> None:
    closed = anyio.Event()
    written = anyio.Event()

    async def source() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"data: x\n\n"
                written.set()
                await anyio.sleep_forever()
        finally:
            closed.set()

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    through_middleware: list[str] = []
    to_server: list[str] = []

    async def wrapped(message: dict[str, Any]) -> None:
        through_middleware.append(message["type"])

    async def server(message: dict[str, Any]) -> None:
        to_server.append(message["type"])

    scope = {"type": "http", "method": "GET", "headers": [], SERVER_SEND: server}
    async with anyio.create_task_group() as tg:
        tg.start_soon(streams.sse_response(source()), scope, receive, wrapped)
        with anyio.fail_after(10):
            await written.wait()
        tg.cancel_scope.cancel()  # the request's task is cancelled (the server stops)
    assert closed.is_set()
    assert through_middleware == ["http.response.start"]
    assert to_server == ["http.response.body"]


@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)
async def test_the_shared_tick_fires_once_per_interval_under_uvloop(anyio_backend: Any) -> None:
    # uvloop's clock has millisecond resolution: a wait that starts just as a tick fires must
    # wait for the next tick, not be woken again by the one that fired.
    # What is checked is which tick each wait lands on, not when it wakes: a loaded machine
    # may run a wake late, never early.
    interval = 1 / 30
    ticks = streams._Ticks()
    landed: list[int] = []
    began = anyio.current_time()
    while anyio.current_time() - began < 1.0:
        await ticks.wait(interval)
        landed.append(ticks._last[interval][1])
    assert len(landed) <= 31
    assert all(b > a for a, b in itertools.pairwise(landed)), landed


async def test_a_signal_wakes_every_waiter_and_each_waits_its_own_time() -> None:
    signal = Signal()
    woken: list[str] = []
    timed_out = anyio.Event()

    async def waiter(name: str, seconds: float) -> None:
        await signal.wait(seconds)
        woken.append(name)
        if name == "soon":
            timed_out.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "soon", 0.01)
        tg.start_soon(waiter, "a", math.inf)
        tg.start_soon(waiter, "b", 60)
        with anyio.fail_after(30):
            await timed_out.wait()
        assert woken == ["soon"]
        signal.set()
    assert sorted(woken) == ["a", "b", "soon"]


async def test_a_cancelled_waiter_leaves_the_signal_and_wakes_nobody() -> None:
    signal = Signal()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await signal.wait()
        woken.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "stays")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await signal.wait()
        await anyio.wait_all_tasks_blocked()
        assert woken == [] and len(signal._waiters) == 1
        signal.set()
    assert woken == ["stays"]


async def test_long_waits_share_one_timer_per_quarter_second() -> None:
    signals = [Signal() for _ in range(50)]
    timers = Timers()
    began = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for signal in signals:
            tg.start_soon(signal.wait, 1.0, timers)
        await anyio.wait_all_tasks_blocked()
        assert len(timers._due) <= 2
    took = anyio.current_time() - began
    assert took >= 1.0  # a limit is never cut short; it may end up to a quarter second late
    assert not timers._due
