"""What the Redis bus adds to the contract (tests/unit/test_bus.py): several processes (here,
several buses, each with its own connection and reader) share one log per session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from redis.asyncio import Redis
from tests.factories import update
from tests.redis_server import RedisServer

from psyche_sse.errors import BusUnavailable, LeaseLost
from psyche_sse.redisbus import RedisBus, stream_key

pytestmark = pytest.mark.anyio


@pytest.fixture
async def two(redis_url: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    async with RedisBus.from_url(redis_url) as a, RedisBus.from_url(redis_url) as b:
        yield a, b


async def test_ids_strictly_increase_across_processes(two: tuple[RedisBus, RedisBus]) -> None:
    a, b = two
    ids = []
    for i in range(10):
        ids.append((await (a if i % 3 else b).publish(update(str(i), session="s"))).id)
    assert ids == list(range(1, 11))
    assert await a.last_id("s") == await b.last_id("s") == 10
    assert [e.id for e in await b.history("s", after=7)] == [8, 9, 10]


async def test_a_follower_elsewhere_sees_every_event_live_in_order(
    two: tuple[RedisBus, RedisBus],
) -> None:
    a, b = two
    for i in range(3):
        await a.publish(update(str(i), session="s"))
    seen: list[tuple[int, str]] = []
    joined = anyio.Event()

    async def follower() -> None:
        async with b.watch("s"):  # a late joiner: the past from the log, then live
            joined.set()
            cursor = 0
            while len(seen) < 8:
                batch = await b.read("s", cursor, 5)
                assert batch is not None
                seen.extend((e.id, e.payload.partial_content) for e in batch)  # type: ignore[union-attr]
                cursor = seen[-1][0] if seen else 0

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follower)
            await joined.wait()
            for i in range(3, 8):
                await a.publish(update(str(i), session="s"))
    assert seen == [(i + 1, str(i)) for i in range(8)]


async def test_the_stream_is_trimmed_to_the_history(redis_url: str) -> None:
    async with RedisBus.from_url(redis_url, history_limit=100) as bus:
        for i in range(150):
            await bus.publish(update(str(i), session="s"))
        assert await bus.redis.xlen(stream_key("s")) == 100
        assert (await bus.first_id("s"), await bus.last_id("s")) == (51, 150)


async def test_a_session_from_the_store_numbers_after_its_mark(redis_url: str) -> None:
    async with RedisBus.from_url(redis_url) as bus:
        bus.start_at("restored", 1001)
        assert (await bus.publish(update("", session="restored"))).id == 1001


async def test_viewers_of_a_process_share_one_reader(
    two: tuple[RedisBus, RedisBus], redis_url: str
) -> None:
    a, b = two
    viewers, events = 200, 20
    got = [0] * viewers
    ready = anyio.Event()
    watching = 0

    async def viewer(i: int) -> None:
        nonlocal watching
        async with b.watch("s"):
            watching += 1
            if watching == viewers:
                ready.set()
            cursor = 0
            while cursor < events:
                batch = await b.read("s", cursor, 5)
                assert batch is not None
                if batch:
                    cursor = batch[-1].id
            got[i] = cursor

    admin = Redis.from_url(redis_url)
    await admin.config_resetstat()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for i in range(viewers):
                tg.start_soon(viewer, i)
            await ready.wait()
            for i in range(events):
                await a.publish(update(str(i), session="s"))
    stats = await admin.info("commandstats")
    await admin.aclose()
    assert got == [events] * viewers
    # One XREAD per wake-up of the process's reader, not one per viewer and event.
    assert stats["cmdstat_xread"]["calls"] <= events + 5


async def test_redis_away_is_an_error_then_numbering_goes_on(redis_service: RedisServer) -> None:
    redis_service.flush()
    async with RedisBus.from_url(redis_service.url) as bus:
        for i in range(5):
            await bus.publish(update(str(i), session="s"))
        redis_service.kill()
        with pytest.raises(BusUnavailable, match="the event bus \\(Redis\\) is unavailable"):
            await bus.publish(update("", session="s"))
        redis_service.start()  # back, empty
        assert (await bus.publish(update("", session="s"))).id == 6


async def test_a_fenced_publish_needs_the_lease(two: tuple[RedisBus, RedisBus]) -> None:
    a, b = two
    await a.redis.set("lease:s", "worker-a")
    a.fence("s", "lease:s", "worker-a")
    b.fence("s", "lease:s", "worker-b")
    assert (await a.publish(update("0", session="s"))).id == 1
    with pytest.raises(LeaseLost):  # a worker that lost the lease publishes nothing more
        await b.publish(update("1", session="s"))
    await a.redis.set("lease:s", "worker-b")  # taken over
    with pytest.raises(LeaseLost):
        await a.publish(update("2", session="s"))
    assert (await b.publish(update("3", session="s"))).id == 2
    a.fence("s", "lease:s", None)  # unfenced: what any worker may publish (a stimulus)
    assert (await a.publish(update("4", session="s"))).id == 3
    assert [e.id for e in await a.history("s")] == [1, 2, 3]


async def test_a_process_wake_up_stream_expires_unless_it_leaves(redis_url: str) -> None:
    admin = Redis.from_url(redis_url)
    try:
        async with RedisBus.from_url(redis_url) as bus, bus.watch("s"):
            wake = [k for k in await admin.keys("psyche:wake:*")]
            assert len(wake) == 1
            # A process killed before it could delete it leaves a key that expires.
            assert 0 < await admin.ttl(wake[0]) <= 86_400
        assert await admin.keys("psyche:wake:*") == []  # deleted on the way out
    finally:
        await admin.aclose()


async def test_a_closed_session_ends_its_readers_even_between_two_reads(
    two: tuple[RedisBus, RedisBus],
) -> None:
    a, b = two
    await a.publish(update("0", session="s"))
    async with b.watch("s"):
        batch = await b.read("s", 0, 5)
        assert batch is not None and [e.id for e in batch] == [1]
        b.close("s")  # deleted elsewhere, while this reader was between two reads
        with anyio.fail_after(5):
            assert await b.read("s", 1, 10) is None
    # Once its readers have left, the session can be read here again.
    await a.publish(update("1", session="s"))
    async with b.watch("s"):
        assert [e.id for e in await b.history("s")] == [1, 2]
