"""The sessions in memory: each a council (its agents' memories) and a log on the bus.

A session not in memory (after a restart, or once it went idle) is loaded from the store
with its agents' memories and its event numbering intact; a session that has run nothing
and had no viewer for ``settings.session_idle`` seconds leaves memory again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

import anyio

from ..bus import EventBus
from ..config import Settings
from ..council import Council
from ..errors import SessionNotFound
from ..llm import LLMClient
from ..memory import release_memory
from ..store import CouncilMemory, Recorder, Store

log = logging.getLogger(__name__)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class Session:
    id: str
    council: Council
    rounds: list[str] = field(default_factory=list)
    title: str = ""
    scope: anyio.CancelScope | None = None
    current_round: str | None = None
    finished: anyio.Event | None = None  # set when the running round has wound down
    idle_since: float | None = None  # when the sweep first saw it idle (engine's clock)
    base: str | None = None  # the situation the person gave for the newest run
    stimuli: list[str] = field(default_factory=list)  # for the next round, in order
    upcoming: str = field(default_factory=new_id)  # the id the next round will have
    owner: int | None = None  # the user's id; None for a session made with no accounts

    def next_round_id(self) -> str:
        """The id of the round about to start (what a stimulus for it was told)."""
        round_id, self.upcoming = self.upcoming, new_id()
        return round_id

    @property
    def running(self) -> bool:
        return self.scope is not None


class LiveSessions:
    """The sessions in memory, by id."""

    def __init__(
        self,
        settings: Settings,
        llm: LLMClient,
        bus: EventBus,
        store: Store,
        recorder: Recorder,
        *,
        shared: bool = False,
    ) -> None:
        self.shared = shared  # other workers run rounds too: the store is the reference
        self.settings = settings
        self.llm = llm
        self.bus = bus
        self.store = store
        self.recorder = recorder
        self.by_id: dict[str, Session] = {}

    def __contains__(self, session_id: str) -> bool:
        return session_id in self.by_id

    def get(self, session_id: str) -> Session | None:
        """The session if it is in memory."""
        return self.by_id.get(session_id)

    def new(self, owner: int | None = None) -> Session:
        session = Session(new_id(), Council(self.settings, self.llm), owner=owner)
        self.by_id[session.id] = session
        return session

    def find(self, session_id: str) -> Session:
        """The session, loaded from the store when it is not in memory (a short blocking
        read; async code uses :meth:`load`). :class:`SessionNotFound` when it is in
        neither."""
        known = self.by_id.get(session_id)
        if known is not None:
            return known
        memory = self.store.council_memory_now(session_id, self._keep)
        if memory is None:
            raise SessionNotFound(session_id)
        return self._restore(memory)

    async def load(self, session_id: str) -> Session:
        """:meth:`find` for async code: the store is read in a worker thread."""
        session = self.by_id.get(session_id)
        if session is not None and (session.running or not self.shared):
            return session
        if session is not None:
            return await self.refresh(session_id)
        memory = await self.store.council_memory(session_id, self._keep)
        if memory is None:
            raise SessionNotFound(session_id)
        # Another task may have loaded it while we read.
        return self.by_id.get(session_id) or self._restore(memory)

    async def refresh(self, session_id: str) -> Session:
        """The session as the store has it now, unless it runs here: among several workers,
        another one may have run rounds in it since it was loaded."""
        session = self.by_id.get(session_id)
        if session is not None and session.running:
            return session
        memory = await self.store.council_memory(session_id, self._keep)
        if memory is None:
            if session is None:
                raise SessionNotFound(session_id)
            return session  # made here, and nothing of it stored yet
        session = self.by_id.get(session_id)
        if session is not None and session.running:  # it started here while we read
            return session
        return self._restore(memory)

    def forget(self, session_id: str) -> Session | None:
        """Take the session out of memory, and end its streams."""
        self.bus.close(session_id)
        return self.by_id.pop(session_id, None)

    @property
    def running(self) -> int:
        """Sessions with a run going, from the moment it is claimed until it ends."""
        return sum(1 for session in self.by_id.values() if session.running)

    def running_of(self, owner: int) -> int:
        """Sessions of the user ``owner`` with a run going."""
        return sum(1 for s in self.by_id.values() if s.running and s.owner == owner)

    @property
    def _keep(self) -> int:
        return max(1, self.settings.memory_rounds)  # at least one: ``Council.latest``

    def _restore(self, memory: CouncilMemory) -> Session:
        council = Council(self.settings, self.llm)
        for reply in memory.replies:
            agent = council.agents.get(reply.agent_id)
            if agent is None:  # an archetype this version no longer has
                continue
            # The same bookkeeping as a live turn, in the same order.
            agent.interaction_count += 1
            agent.lengths.record(reply.length)
            if reply.text is not None and reply.situation is not None:
                agent.remember(reply.situation, reply.text)
                council.latest[reply.agent_id] = reply.text
        council.restore_state(memory.states)
        council.spent_usd = memory.spent_usd
        session = Session(
            memory.id, council, rounds=list(memory.round_ids), base=memory.base, owner=memory.owner
        )
        session.title = memory.title
        self.bus.start_at(memory.id, memory.event_hwm + 1)
        self.recorder.adopt(memory.id, memory.event_hwm)
        self.by_id[memory.id] = session
        log.info("session %s loaded from the store", memory.id)
        return session

    # --- idle sessions leave memory ------------------------------------------------------

    async def sweep(self) -> None:
        """Forever: evict the idle sessions, every so often."""
        idle = self.settings.session_idle
        while True:
            await anyio.sleep(min(idle, 5.0) / 2)
            await self.evict_idle(idle)

    async def evict_idle(self, idle: float) -> int:
        """Forget the sessions that have run nothing and had no viewer for ``idle`` seconds.

        They live on in the store and come back on demand (:meth:`load`), their numbering
        continuing where it stopped. Returns how many left.
        """
        now = anyio.current_time()
        gone = []
        for session in list(self.by_id.values()):
            if session.running or self.bus.followers(session.id):
                session.idle_since = None
            elif session.idle_since is None:
                session.idle_since = now
            elif now - session.idle_since >= idle:
                gone.append(session.id)
        for session_id in gone:
            last = await self.bus.last_id(session_id)
            self.forget(session_id)
            await self.recorder.forget(session_id, last)
        if gone:
            log.debug("%d idle sessions left memory", len(gone))
            release_memory()
        return len(gone)
