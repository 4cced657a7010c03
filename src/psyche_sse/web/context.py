"""What the routes share: the settings, the renderer, and the running engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Settings
from ..council import InputError
from ..engine import Engine, RoundInProgress, Session, SessionNotFound
from .errors import HTTPError
from .render import Renderer
from .transcript import Transcript


@dataclass
class Context:
    settings: Settings
    renderer: Renderer
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise HTTPError(503, "the service is starting or stopping; try again shortly")
        return self._engine

    async def session(self, session_id: str) -> Session:
        """The session, loaded from the store when it is not in memory; 404 when unknown."""
        try:
            return await self.engine.load_session(session_id)
        except SessionNotFound:
            raise HTTPError(
                404, "there is no session with this id", code="session_not_found"
            ) from None

    async def transcript(self, session: Session) -> Transcript:
        """The session's conversation so far, and the id of the last event it reflects.

        From the bus when its history holds the whole session (the usual case, and exact to
        the event); from the store when it does not (a session from before a restart, or
        one longer than the bus keeps).
        """
        engine = self.engine
        events = engine.bus.history(session.id)
        if not session.rounds or (events and events[0].id == 1):
            return Transcript.from_events(session.id, events)
        return Transcript.from_store(await engine.transcript(session.id))

    async def start_round(
        self,
        situation: str,
        session_id: str | None,
        *,
        rounds: int = 1,
        seed: int | None = None,
    ) -> tuple[Session, str, int]:
        """Start a round: (session, round id, the id its events follow). Errors as HTTP."""
        engine = self.engine
        if session_id is not None:
            await self.session(session_id)  # loaded without blocking, if it must be
        try:
            # The round runs as a task that has not started yet, so every event after this
            # id is the round's.
            after = engine.bus.last_id(session_id) if session_id else 0
            session, round_id = engine.start_round(situation, session_id, rounds=rounds, seed=seed)
        except InputError as exc:
            raise HTTPError(400, str(exc), code="invalid_situation") from None
        except RoundInProgress:
            raise HTTPError(
                409,
                "a round is already running in this session; wait for it or stop it",
                code="round_in_progress",
            ) from None
        return session, round_id, after
