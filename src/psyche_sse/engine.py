"""Sessions and their rounds: the one object the CLI and the web service drive.

A session is a council (its agents' memories) and an event log on the bus. Rounds run as
tasks of the engine's task group, so a round keeps going when its viewer leaves; only
:meth:`Engine.stop` stops it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .bus import EventBus, MemoryBus
from .config import Settings
from .council import Council, clean_situation
from .events import Event, EventType
from .llm import LLMClient

log = logging.getLogger(__name__)


class SessionNotFound(LookupError):
    pass


class RoundInProgress(RuntimeError):
    pass


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

    @property
    def running(self) -> bool:
        return self.scope is not None


class Engine:
    """Owns the sessions, the bus and the LLM client. Use ``async with Engine(...)``."""

    def __init__(
        self, settings: Settings, *, bus: EventBus | None = None, llm: LLMClient | None = None
    ) -> None:
        self.settings = settings
        self.bus: EventBus = bus or MemoryBus(settings.history_events)
        self.llm = llm or LLMClient(settings)
        self.sessions: dict[str, Session] = {}
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> Engine:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            await self.llm.close()

    def session(self, session_id: str | None = None) -> Session:
        """The session, created when ``session_id`` is None."""
        if session_id is None:
            session = Session(new_id(), Council(self.settings, self.llm))
            self.sessions[session.id] = session
            return session
        try:
            return self.sessions[session_id]
        except KeyError:
            raise SessionNotFound(session_id) from None

    def publisher(self, session_id: str) -> Callable[[EventType, dict[str, Any]], Awaitable[Event]]:
        async def publish(kind: EventType, data: dict[str, Any]) -> Event:
            return await self.bus.publish(session_id, kind, data)

        return publish

    def prepare_round(
        self, situation: str, session_id: str | None = None
    ) -> tuple[Session, str, str]:
        """Validate the input and claim the session for a new round: (session, round, text)."""
        text = clean_situation(situation, self.settings.max_situation_chars)
        session = self.session(session_id)
        if session.running:
            raise RoundInProgress(f"session {session.id} already has a round running")
        round_id = new_id()
        session.scope = anyio.CancelScope()
        session.current_round = round_id
        session.title = session.title or text[:80]
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
