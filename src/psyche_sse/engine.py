"""Sessions and their rounds: the one object the CLI and the web service drive.

A session is a council (its agents' memories) and an event log on the bus. Rounds run as
tasks of the engine's task group, so a round keeps going when its viewer leaves; only
:meth:`Engine.stop` stops it.

Everything a session publishes is also recorded in the store (``settings.db``); a session
that is not in memory, after a restart, is loaded from there with its agents' memories and
its event numbering intact.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .bus import EventBus, MemoryBus
from .config import Settings
from .council import Council, InputError, clean_situation
from .events import Event, EventType, utc_now
from .llm import LLMClient
from .memory import release_memory
from .sentiment import Sentiment
from .store import Recorder, SessionHistory, SessionSummary, Store, Transcript
from .store import queries as q
from .store.recorder import SAVE_INTERVAL

log = logging.getLogger(__name__)


class SessionNotFound(LookupError):
    pass


class RoundInProgress(RuntimeError):
    pass


class TooManyRounds(RuntimeError):
    """The server runs ``settings.max_running_rounds`` rounds already."""

    def __init__(self, running: int) -> None:
        super().__init__(f"{running} rounds are running, the most this server runs at once")
        self.running = running


MAX_TITLE_CHARS = 200


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def one_line(text: str) -> str:
    return " ".join(text.split())


def clean_title(title: str) -> str:
    """A session title as we will store it, or :class:`InputError`."""
    text = one_line("".join(ch for ch in title if ch.isprintable() or ch.isspace()))
    if not text:
        raise InputError("a session title cannot be empty")
    if len(text) > MAX_TITLE_CHARS:
        raise InputError(f"the title is too long (the limit is {MAX_TITLE_CHARS} characters)")
    return text


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

    @property
    def running(self) -> bool:
        return self.scope is not None


class Engine:
    """Owns the sessions, the bus, the LLM client and the store. Use ``async with``.

    The store is opened on entry from ``settings.db`` (:class:`~psyche_sse.store.StoreError`
    when it cannot be used), unless one is passed in, which the caller then owns.
    ``save_interval``: seconds between saves of a streaming turn's partial text.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        bus: EventBus | None = None,
        llm: LLMClient | None = None,
        store: Store | None = None,
        save_interval: float = SAVE_INTERVAL,
    ) -> None:
        self.settings = settings
        self.bus: EventBus = bus or MemoryBus(settings.history_events)
        self.llm = llm or LLMClient(settings)
        self.sessions: dict[str, Session] = {}
        self.recorder: Recorder | None = None
        self.save_interval = save_interval
        self._store = store
        self._tg: TaskGroup | None = None
        self._exit: AsyncExitStack | None = None

    async def __aenter__(self) -> Engine:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self.llm.close)
            if self._store is None:
                self._store = await Store.aopen(self.settings.db)
                stack.push_async_callback(self._close_store, self._store)
            recorder = Recorder(self._store, save_interval=self.save_interval)
            self.recorder = await stack.enter_async_context(recorder)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            self._tg.start_soon(self._sweep_idle)
            self._exit = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None and self._exit is not None
        # Rounds stop first (their last turns complete and are recorded), then the recorder
        # saves what is left, then the store closes.
        self._tg.cancel_scope.cancel()
        try:
            return await self._exit.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            self._exit = None
            self.recorder = None

    async def _close_store(self, store: Store) -> None:
        await store.aclose()
        if self._store is store:
            self._store = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the engine is not running")
        return self._store

    def session(self, session_id: str | None = None) -> Session:
        """The session, created when ``session_id`` is None.

        A session not in memory is loaded from the store (a short blocking read; async code
        can use :meth:`load_session` instead). :class:`SessionNotFound` when it is in
        neither.
        """
        if session_id is None:
            session = Session(new_id(), Council(self.settings, self.llm))
            self.sessions[session.id] = session
            return session
        known = self.sessions.get(session_id)
        if known is not None:
            return known
        history = None
        if self._store is not None:
            history = self._store.run_blocking(
                lambda conn: q.session_history(conn, session_id=session_id, keep=self._memory_keep)
            )
        if history is None:
            raise SessionNotFound(session_id)
        return self._restore(history)

    async def load_session(self, session_id: str) -> Session:
        """:meth:`session` for async code: the store is read in a worker thread."""
        session = self.sessions.get(session_id)
        if session is not None:
            return session
        history = await self.store.session_history(session_id, self._memory_keep)
        if history is None:
            raise SessionNotFound(session_id)
        # Another task may have loaded it while we read.
        return self.sessions.get(session_id) or self._restore(history)

    @property
    def _memory_keep(self) -> int:
        return max(1, self.settings.memory_rounds)  # at least one: ``Council.latest``

    def _restore(self, history: SessionHistory) -> Session:
        council = Council(self.settings, self.llm)
        for reply in history.replies:
            agent = council.agents.get(reply.agent_id)
            if agent is None:  # an archetype this version no longer has
                continue
            # The same bookkeeping as a live turn, in the same order.
            agent.interaction_count += 1
            agent.lengths.record(reply.length)
            if reply.text is not None and reply.situation is not None:
                agent.remember(reply.situation, reply.text)
                council.latest[reply.agent_id] = reply.text
            if reply.length and reply.sentiment:
                agent.sentiments.append(
                    Sentiment(
                        float(reply.sentiment.get("score", 0.0)),
                        float(reply.sentiment.get("subjectivity", 0.5)),
                    )
                )
        session = Session(history.id, council, rounds=list(history.round_ids))
        session.title = history.title
        self.bus.start_at(history.id, history.event_hwm + 1)
        if self.recorder is not None:
            self.recorder.adopt(history.id, history.event_hwm)
        self.sessions[history.id] = session
        log.info("session %s loaded from the store", history.id)
        return session

    def publisher(self, session_id: str) -> Callable[[EventType, dict[str, Any]], Awaitable[Event]]:
        """Publish to the session's log and record it. Publish session events only here."""

        async def publish(kind: EventType, data: dict[str, Any]) -> Event:
            recorder = self.recorder
            if recorder is not None:
                session = self.sessions.get(session_id)
                await recorder.reserve(
                    session_id, self.bus.last_id(session_id) + 1, session.title if session else ""
                )
            event = await self.bus.publish(session_id, kind, data)
            if recorder is not None:
                recorder.observe(event)
            return event

        return publish

    @property
    def running(self) -> int:
        """Sessions with a run going, from :meth:`prepare_round` until it ends: capped by
        ``settings.max_running_rounds``."""
        return sum(1 for session in self.sessions.values() if session.running)

    # --- idle sessions leave memory ------------------------------------------------------

    async def _sweep_idle(self) -> None:
        idle = self.settings.session_idle
        while True:
            await anyio.sleep(min(idle, 5.0) / 2)
            await self.evict_idle(idle)

    async def evict_idle(self, idle: float) -> int:
        """Forget the sessions that have run nothing and had no viewer for ``idle`` seconds.

        They live on in the store and come back on demand (:meth:`load_session`), their
        numbering continuing where it stopped. Returns how many left.
        """
        now = anyio.current_time()
        gone = []
        for session in list(self.sessions.values()):
            if session.running or self.bus.followers(session.id):
                session.idle_since = None
            elif session.idle_since is None:
                session.idle_since = now
            elif now - session.idle_since >= idle:
                gone.append(session.id)
        for session_id in gone:
            del self.sessions[session_id]
            last = self.bus.last_id(session_id)
            self.bus.close(session_id)
            if self.recorder is not None:
                await self.recorder.forget(session_id, last)
        if gone:
            log.debug("%d idle sessions left memory", len(gone))
            release_memory()
        return len(gone)

    # --- stored sessions: what the web layer reads and changes --------------------------

    def _recorder(self) -> Recorder:
        if self.recorder is None:
            raise RuntimeError("the engine is not running")
        return self.recorder

    async def list_sessions(self, *, limit: int = 50, offset: int = 0) -> list[SessionSummary]:
        """Stored sessions, the most recently active first."""
        return await self._recorder().call(
            None, lambda conn, _: q.list_sessions(conn, limit=limit, offset=offset)
        )

    async def count_sessions(self) -> int:
        return await self._recorder().call(None, lambda conn, _: q.count_sessions(conn))

    async def transcript(self, session_id: str) -> Transcript:
        """The session's rounds and turns so far, running ones with their text so far.

        Its ``last_event_id`` is the last event it reflects: follow the session's events
        after it to stay live with no gap and no duplicate.
        """
        found = await self._recorder().call(
            session_id,
            lambda conn, as_of: q.transcript(conn, session_id=session_id, as_of=as_of),
        )
        if found is not None:
            return found
        session = self.sessions.get(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        # Created, but its first round has not published yet.
        now = utc_now()
        return Transcript(session_id, session.title, now, now, self.bus.last_id(session_id))

    async def rename_session(self, session_id: str, title: str) -> str:
        """Rename the session; returns the title as stored. :class:`InputError` when the
        title is empty or too long."""
        text = clean_title(title)
        session = self.sessions.get(session_id)
        if session is not None:
            session.title = text
        if not await self.store.rename_session(session_id, text) and session is None:
            raise SessionNotFound(session_id)
        return text

    async def delete_session(self, session_id: str) -> None:
        """Stop the session's round, forget the session, delete it from the store."""
        session = self.sessions.get(session_id)
        if session is not None and session.scope is not None:
            session.scope.cancel()
            if session.finished is not None:
                with anyio.move_on_after(10):
                    await session.finished.wait()
        self.sessions.pop(session_id, None)
        self.bus.close(session_id)
        if not await self._recorder().delete(session_id) and session is None:
            raise SessionNotFound(session_id)

    def prepare_round(
        self, situation: str, session_id: str | None = None
    ) -> tuple[Session, str, str]:
        """Validate the input and claim the session for a new round: (session, round, text)."""
        text = clean_situation(situation, self.settings.max_situation_chars)
        session = self.session(session_id)
        if session.running:
            raise RoundInProgress(f"session {session.id} already has a round running")
        if self.running >= self.settings.max_running_rounds:
            raise TooManyRounds(self.running)
        round_id = new_id()
        session.scope = anyio.CancelScope()
        session.finished = anyio.Event()
        session.current_round = round_id
        session.title = session.title or one_line(text)[:80]
        return session, round_id, text

    async def run_round(
        self,
        session: Session,
        round_id: str,
        situation: str,
        *,
        rounds: int = 1,
        seed: int | None = None,
    ) -> None:
        """Run ``rounds`` rounds (the first with ``round_id``) until done or stopped."""
        assert session.scope is not None, "call prepare_round first"
        publish = self.publisher(session.id)
        try:
            with session.scope:
                for index in range(rounds):
                    if index:
                        round_id = new_id()
                        session.current_round = round_id
                    session.rounds.append(round_id)
                    await session.council.run_round(
                        publish,
                        session_id=session.id,
                        round_id=round_id,
                        situation=situation,
                        index=len(session.rounds),
                        seed=seed,
                        rounds=rounds,
                    )
        finally:
            session.scope = None
            session.current_round = None
            if session.finished is not None:
                session.finished.set()

    def start_round(
        self,
        situation: str,
        session_id: str | None = None,
        *,
        rounds: int = 1,
        seed: int | None = None,
    ) -> tuple[Session, str]:
        """Start a round in the background; returns at once with its session and round id."""
        if self._tg is None:
            raise RuntimeError("the engine is not running")
        session, round_id, text = self.prepare_round(situation, session_id)
        self._tg.start_soon(self._run_logged, session, round_id, text, rounds, seed)
        return session, round_id

    async def _run_logged(
        self, session: Session, round_id: str, situation: str, rounds: int, seed: int | None
    ) -> None:
        try:
            await self.run_round(session, round_id, situation, rounds=rounds, seed=seed)
        except Exception:
            log.exception("round %s of session %s failed", round_id, session.id)

    def stop(self, session_id: str, turn_id: str | None = None) -> bool:
        """Stop the session's round, or only one turn of it. True when something was stopped."""
        session = self.session(session_id)
        if turn_id is not None:
            return session.council.cancel_turn(turn_id)
        if session.scope is None:
            return False
        session.scope.cancel()
        return True
