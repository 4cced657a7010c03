"""What the workers sharing a Redis agree on: who runs which session, and how to reach it.

- **Leases.** A worker runs a session's round only while it holds the session's lease
  (``SET NX PX``), renewed every third of ``settings.lease_seconds``: a second worker asked
  to start a round there gets a 409, and a worker that dies lets its lease expire.
- **Running rounds.** A hash names the worker of every running session; every worker looks
  at it every half lease for sessions whose lease is gone (:meth:`Cluster.orphans`) and
  takes one over (:meth:`Cluster.adopt`) to end its round for its viewers.
- **Control.** A stop sent to any worker reaches the one running the round: a message on
  that worker's channel, answered on a short-lived list. A deleted session is announced to
  every worker on a channel they all listen to, and its keys go.
- **Owners.** A hash names the user of every running session, so that a user's limit on
  running rounds counts them on every worker.
- **Stimuli.** Queued in a list per session, so that whichever worker runs the next round
  takes them.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from ..config import Settings
from ..errors import BusUnavailable
from ..redisbus import PREFIX, Entries, RedisBus, counter_key, stream_key

log = logging.getLogger(__name__)

RUNNING = f"{PREFIX}:running"
OWNERS = f"{PREFIX}:owners"  # running session -> the user it runs for
BROADCAST = f"{PREFIX}:control:all"
ROUNDS = f"{PREFIX}:rounds"  # runs asked of the generating workers, taken by one each
GENERATORS = "generators"
# Seconds a delivering worker waits for a generating one to take a run.
HANDOVER_TIMEOUT = 15.0
# Seconds a worker asking another to stop a round waits for its answer.
ASK_TIMEOUT = 5.0

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_ORPHANS = """
local out = {}
for _, session in ipairs(redis.call('HKEYS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. session) == 0 then table.insert(out, session) end
end
return out
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
    redis.call('HDEL', KEYS[2], ARGV[2])
    redis.call('HDEL', KEYS[3], ARGV[2])
  end
  return 1
end
return 0
"""


def lease_key(session_id: str) -> str:
    return f"{PREFIX}:lease:{session_id}"


def stimuli_key(session_id: str) -> str:
    return f"{PREFIX}:stimuli:{session_id}"


def control_channel(worker: str) -> str:
    return f"{PREFIX}:control:{worker}"


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _reply_key() -> str:
    """A short-lived list for one answer (see :meth:`Cluster.ask`)."""
    return f"{PREFIX}:reply:{uuid.uuid4().hex}"


def _reply(pipe: Pipeline, key: str, answer: dict[str, Any], timeout: float) -> None:
    """Leave ``answer`` on the list ``key`` for one waiting ``timeout`` seconds, which goes a
    little after that wait has given up."""
    pipe.rpush(key, json.dumps(answer))
    pipe.expire(key, int(timeout) + 5)


class Cluster:
    """This worker's side of the agreement (see the module's text)."""

    def __init__(self, bus: RedisBus, settings: Settings) -> None:
        self.bus = bus
        self.redis: Redis = bus.redis
        self.worker = uuid.uuid4().hex[:12]
        self.lease_ms = int(settings.lease_seconds * 1000)
        self.held: set[str] = set()  # the sessions whose lease this worker holds
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)
        self._orphans = self.redis.register_script(_ORPHANS)

    # --- leases ------------------------------------------------------------------------

    async def claim(self, session_id: str, owner: int | None = None) -> bool:
        """Take the session's lease for a round run for the user ``owner``: False when
        another worker holds it."""
        try:
            taken = await self.adopt(session_id)
            if taken and owner is not None:
                await self.redis.hset(OWNERS, session_id, owner)
            return taken
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc

    async def running_of(self, owner: int) -> int:
        """How many sessions have a round running for the user ``owner``, on any worker."""
        try:
            sessions = await self.redis.hkeys(RUNNING)
            if not sessions:
                return 0
            owners = await self.redis.hmget(OWNERS, sessions)
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc
        return sum(1 for o in owners if o is not None and int(o) == owner)

    async def release(self, session_id: str) -> None:
        self.held.discard(session_id)
        self.bus.fence(session_id, lease_key(session_id), None)
        try:
            await self._release(
                keys=[lease_key(session_id), RUNNING, OWNERS], args=[self.worker, session_id]
            )
        except RedisError as exc:
            log.warning("cannot release the lease of session %s: %s", session_id, exc)

    async def holder(self, session_id: str) -> str | None:
        """The worker holding the session's lease, if any."""
        try:
            found = await self.redis.get(lease_key(session_id))
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc
        return found.decode() if isinstance(found, bytes) else found

    async def keep_leases(self, lost: Callable[[str], None]) -> None:
        """Forever: renew the leases held here; ``lost(session)`` for one another worker
        took (this worker was too slow to renew it: its round must stop)."""
        while True:
            await anyio.sleep(self.lease_ms / 3000)
            for session_id in list(self.held):
                try:
                    kept = await self._renew(
                        keys=[lease_key(session_id)], args=[self.worker, self.lease_ms]
                    )
                except RedisError as exc:
                    log.warning("cannot renew the lease of session %s: %s", session_id, exc)
                    continue
                if not kept and session_id in self.held:
                    log.error("lost the lease of session %s to another worker", session_id)
                    self.held.discard(session_id)
                    self.bus.fence(session_id, lease_key(session_id), None)
                    lost(session_id)

    # --- workers that died -------------------------------------------------------------

    async def orphans(self) -> list[str]:
        """Sessions named running whose worker's lease has expired (read at one instant: a
        round that ends meanwhile, its lease and its name going together, is not one)."""
        found = await self._orphans(keys=[RUNNING], args=[lease_key("")])
        return [s.decode() if isinstance(s, bytes) else str(s) for s in found]

    async def adopt(self, session_id: str) -> bool:
        """Take the lease of a session (an orphan's: False when another worker was
        quicker)."""
        taken = await self.redis.set(lease_key(session_id), self.worker, nx=True, px=self.lease_ms)
        if taken:
            await self.redis.hset(RUNNING, session_id, self.worker)
            self.held.add(session_id)
            # What this worker publishes of the session from now on needs the lease.
            self.bus.fence(session_id, lease_key(session_id), self.worker)
        return bool(taken)

    async def watch_orphans(self, end: Callable[[str], Awaitable[object]]) -> None:
        """Forever: every half lease, end the rounds of the workers that died."""
        while True:
            await anyio.sleep(self.lease_ms / 2000)
            try:
                for session_id in await self.orphans():
                    if await self.adopt(session_id):
                        log.info("session %s: its worker stopped; taking it over", session_id)
                        try:
                            await end(session_id)
                        finally:
                            await self.release(session_id)
            except (RedisError, BusUnavailable) as exc:
                log.debug("cannot look for orphaned rounds: %s", exc)

    # --- control -----------------------------------------------------------------------

    async def ask(self, worker: str, message: dict[str, Any]) -> dict[str, Any] | None:
        """Send ``message`` to ``worker`` and wait for its answer (None: no answer)."""
        reply = _reply_key()
        try:
            heard = await self.redis.publish(
                control_channel(worker), json.dumps({**message, "reply": reply})
            )
            if not heard:
                return None
            return await self._answer(reply, ASK_TIMEOUT)
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc

    async def _answer(self, reply: str, seconds: float) -> dict[str, Any] | None:
        """The answer left on the list ``reply`` within ``seconds``, if any."""
        answer = await self.redis.blpop([reply], timeout=seconds)
        if answer is None:
            return None
        result: dict[str, Any] = json.loads(answer[1])
        return result

    async def forget(self, session_id: str) -> None:
        """The session is deleted: its keys go, and every worker forgets it."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(
                    stream_key(session_id), counter_key(session_id), stimuli_key(session_id)
                )
                pipe.publish(BROADCAST, json.dumps({"op": "forget", "session_id": session_id}))
                await pipe.execute()
        except RedisError as exc:
            log.warning("cannot tell the other workers session %s is deleted: %s", session_id, exc)

    async def listen(self, handle: Handler) -> None:
        """Forever: answer the messages sent to this worker, and handle those announced to
        every worker (reconnecting when Redis was away)."""
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(control_channel(self.worker), BROADCAST)
                    async for item in pubsub.listen():
                        if item.get("type") != "message":
                            continue
                        message = json.loads(item["data"])
                        answer = await handle(message)
                        if "reply" not in message:  # an announcement: nobody waits
                            continue
                        async with self.redis.pipeline(transaction=True) as pipe:
                            _reply(pipe, message["reply"], answer, ASK_TIMEOUT)
                            await pipe.execute()
            except (RedisError, ValueError, KeyError) as exc:
                log.debug("control channel: %s", exc)
                await anyio.sleep(0.5)

    # --- runs handed over to the generating workers --------------------------------------

    async def hand_over(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Queue a run for the generating workers; their answer (None: none answered)."""
        reply = _reply_key()
        try:
            await self.redis.xadd(ROUNDS, {"r": json.dumps({**request, "reply": reply})})
            return await self._answer(reply, HANDOVER_TIMEOUT)
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc

    async def take_runs(self, handle: Handler) -> None:
        """Forever: take the runs queued for the generating workers, one at a time, each
        by one worker (a consumer group), and answer them."""
        while True:
            try:
                try:
                    await self.redis.xgroup_create(ROUNDS, GENERATORS, id="0", mkstream=True)
                except RedisError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                while True:
                    reply = await self.redis.xreadgroup(
                        GENERATORS, self.worker, {ROUNDS: ">"}, count=1, block=2000
                    )
                    for _, entries in cast(list[tuple[bytes, Entries]], reply or []):
                        for entry_id, fields in entries:
                            request = json.loads(fields[b"r"])
                            answer = await handle(request)
                            async with self.redis.pipeline(transaction=True) as pipe:
                                _reply(pipe, request["reply"], answer, HANDOVER_TIMEOUT)
                                pipe.xack(ROUNDS, GENERATORS, entry_id)
                                pipe.xdel(ROUNDS, entry_id)
                                await pipe.execute()
            except (RedisError, ValueError, KeyError) as exc:
                log.debug("the queue of runs: %s", exc)
                await anyio.sleep(0.5)

    # --- stimuli -----------------------------------------------------------------------

    async def queue_stimulus(self, session_id: str, text: str) -> None:
        try:
            await self.redis.rpush(stimuli_key(session_id), text)
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc

    async def take_stimuli(self, session_id: str) -> list[str]:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lrange(stimuli_key(session_id), 0, -1)
                pipe.delete(stimuli_key(session_id))
                texts, _ = await pipe.execute()
        except RedisError as exc:
            raise BusUnavailable(str(exc)) from exc
        return [t.decode() if isinstance(t, bytes) else str(t) for t in texts]
