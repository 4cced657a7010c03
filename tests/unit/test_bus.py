from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from tests.conftest import BusMaker
from tests.factories import update

from psyche_sse.bus import EventBus

pytestmark = pytest.mark.anyio


async def collect(bus: EventBus, session: str, after: int, count: int) -> list[int]:
    ids: list[int] = []
    with anyio.fail_after(5):
        async for batch in bus.subscribe(session, after):
            ids.extend(e.id for e in batch)
            if len(ids) >= count:
                return ids
    return ids


async def test_ids_strictly_increase_per_session(new_bus: BusMaker) -> None:
    bus = await new_bus()
    a = [await bus.publish(update(str(i), session="a")) for i in range(3)]
    b = await bus.publish(update("", session="b"))
    assert [e.id for e in a] == [1, 2, 3] and b.id == 1
    assert await bus.last_id("a") == 3 and await bus.last_id("nobody") == 0


async def test_replay_from_an_id_then_live(new_bus: BusMaker) -> None:
    bus = await new_bus()
    for i in range(5):
        await bus.publish(update(str(i), session="s"))
    result: list[int] = []

    async def reader() -> None:
        result.extend(await collect(bus, "s", 3, 4))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        await bus.publish(update("", session="s"))
        await bus.publish(update("", session="s"))
    assert result == [4, 5, 6, 7]


async def test_history_is_bounded(new_bus: BusMaker) -> None:
    bus = await new_bus(history_limit=100)
    for i in range(250):
        await bus.publish(update(str(i), session="s"))
    history = await bus.history("s")
    assert len(history) == 100 and history[0].id == 151
    assert [e.id for e in await bus.history("s", after=240)] == list(range(241, 251))


async def test_first_id_tells_from_where_replay_is_whole(new_bus: BusMaker) -> None:
    bus = await new_bus(history_limit=3)
    assert await bus.first_id("s") == 1 and await bus.last_id("s") == 0
    for i in range(5):
        await bus.publish(update(str(i), session="s"))
    assert (await bus.first_id("s"), await bus.last_id("s")) == (3, 5)
    bus.start_at("restored", 1001)  # a session loaded from the store: nothing retained
    assert (await bus.first_id("restored"), await bus.last_id("restored")) == (1001, 1000)


async def test_many_subscribers_and_a_slow_one_blocks_nobody(new_bus: BusMaker) -> None:
    bus = await new_bus()
    fast_results: list[list[int]] = [[], []]
    fast_done = [anyio.Event(), anyio.Event()]
    slow_batches: list[int] = []
    gate = anyio.Event()

    async def fast(i: int) -> None:
        fast_results[i] = await collect(bus, "s", 0, 50)
        fast_done[i].set()

    async def slow() -> None:
        async for batch in bus.subscribe("s"):
            slow_batches.append(len(batch))
            await gate.wait()  # stuck until released: must not hold up anyone
            if sum(slow_batches) >= 50:
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(fast, 0)
        tg.start_soon(fast, 1)
        tg.start_soon(slow)
        await anyio.wait_all_tasks_blocked()
        for i in range(50):
            await bus.publish(update(str(i), session="s"))
            await anyio.lowlevel.checkpoint()
        with anyio.fail_after(5):
            for done in fast_done:
                await done.wait()  # the fast readers finish while the slow one is stuck
        gate.set()
    assert fast_results == [list(range(1, 51))] * 2
    assert sum(slow_batches) == 50 and len(slow_batches) < 50  # it caught up in big batches


async def test_close_ends_subscriptions(new_bus: BusMaker) -> None:
    bus = await new_bus()
    await bus.publish(update("", session="s"))
    done = anyio.Event()

    async def reader() -> None:
        async for _ in bus.subscribe("s"):
            pass
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        bus.close("s")
        with anyio.fail_after(2):
            await done.wait()
