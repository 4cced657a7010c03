"""What the routes share: the settings, the renderer, the streams' hub, and the running engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from ..config import Settings
from ..council import clean_situation, clean_stimulus
from ..engine import Engine, Session
from ..errors import (
    BusUnavailable,
    InputError,
    OverBudget,
    RoundInProgress,
    SessionNotFound,
    TooManyRounds,
)
from ..events import Event, SessionHistory
from ..store import SessionSummary
from ..store.search import SearchPage
from ..transcript import Transcript
from .auth import User
from .errors import HTTPError
from .limits import RETRY_AFTER_SECONDS, RoundLimits
from .render import Renderer
from .streams import Format, StreamHub, follow


class Started(NamedTuple):
    """A run just started: its session, first round, the id its events follow, and the
    number of its first round in the session."""

    session: Session
    round_id: str
    after: int
    first_index: int


def _not_found() -> HTTPError:
    return HTTPError(404, "there is no session with this id", code="session_not_found")


@dataclass
class Context:
    settings: Settings
    renderer: Renderer
    streams: StreamHub
    _engine: Engine | None = field(default=None, repr=False)
    limits: RoundLimits = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.limits = RoundLimits(self.settings)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise HTTPError(503, "the service is starting or stopping; try again shortly")
        return self._engine

    @contextmanager
    def running(self, engine: Engine) -> Iterator[None]:
        """The routes use ``engine`` inside the block; outside it they answer 503."""
        self._engine = engine
        try:
            yield
        finally:
            self._engine = None

    async def session(self, session_id: str, user: User) -> Session:
        """The session, loaded from the store when it is not in memory; 404 when unknown,
        and when it is another user's: only its owner and admins see it."""
        try:
            session = await self.engine.live.load(session_id)
        except SessionNotFound:
            raise _not_found() from None
        if not visible(session, user):
            raise _not_found()
        return session

    async def sessions(
        self, user: User, *, limit: int, offset: int
    ) -> tuple[list[SessionSummary], int]:
        """A page of the sessions ``user`` sees (an admin: everyone's), and their total."""
        if not user.admin and user.id is None:
            return [], 0
        owner = None if user.admin else user.id
        archive = self.engine.archive
        total = await archive.count(owner=owner)
        return await archive.list(limit=limit, offset=offset, owner=owner), total

    async def search(
        self, user: User, terms: tuple[str, ...], *, limit: int, offset: int
    ) -> SearchPage:
        """A page of the sessions ``user`` sees (an admin: everyone's) that hold ``terms``."""
        if not user.admin and user.id is None:
            return SearchPage([], 0)
        owner = None if user.admin else user.id
        return await self.engine.archive.search(terms, limit=limit, offset=offset, owner=owner)

    async def transcript(self, session: Session) -> Transcript:
        """The session's conversation so far, and the id of the last event it reflects.

        From the bus when its history holds the whole session (the usual case, and exact to
        the event); from the store when it does not (a session from before a restart, or
        one longer than the bus keeps).
        """
        engine = self.engine
        try:
            events = await engine.bus.history(session.id)
        except BusUnavailable:
            return await self.stored(session)
        if not session.rounds or (events and events[0].id == 1):
            return Transcript.from_events(session.id, events)
        return await self.stored(session)

    async def stored(self, session: Session) -> Transcript:
        """The session as the store has it, up to its ``last_event_id``; 404 when deleted."""
        try:
            return await self.engine.archive.transcript(
                session.id, elsewhere=self._elsewhere(session)
            )
        except SessionNotFound:
            raise _not_found() from None

    def _elsewhere(self, session: Session) -> bool:
        """Whether another worker may be writing the session to the store: among several
        workers, one not running it here. Then what the store has stands for the events up
        to the last one that worker saved (what came since follows from the bus)."""
        return self.engine.live.shared and not session.running

    def follow(
        self,
        session: Session,
        after: int,
        fmt: Format,
        *,
        until: Callable[[Event], bool] | None = None,
    ) -> AsyncIterator[bytes]:
        """The session's stream after event ``after``, live, in ``fmt``.

        When the bus cannot replay from ``after`` (the id is from before a restart, older
        than the history kept in memory, or beyond the newest), or the client falls further
        behind than the bus keeps, the stream sends a ``session_history`` message: the whole
        conversation as the store has it, with the id of the last event it reflects; the
        events after that id follow.
        """
        engine = self.engine

        async def history() -> Event:
            # SessionNotFound: deleted
            stored = await engine.archive.transcript(session.id, elsewhere=self._elsewhere(session))
            return Event(stored.last_event_id, SessionHistory.of(stored))

        return follow(
            self.streams,
            engine.bus,
            session.id,
            after,
            fmt,
            history=history,
            max_per_second=self.settings.max_deltas_per_second,
            heartbeat=self.settings.heartbeat,
            until=until,
            metrics=engine.metrics,
        )

    async def rename(self, session: Session, title: str) -> str:
        """Rename the session: the title as stored, or 422 when it is empty or too long."""
        try:
            return await self.engine.archive.rename(session.id, title)
        except InputError as exc:
            raise HTTPError(422, str(exc), code="invalid_title") from None
        except SessionNotFound:
            raise _not_found() from None

    async def delete(self, session: Session) -> None:
        """Delete the session; a round it is running is stopped first."""
        try:
            await self.engine.archive.delete(session.id)
        except SessionNotFound:
            raise _not_found() from None

    async def inject(self, session: Session, text: str) -> tuple[int, str]:
        """Queue a stimulus for the session's next round: its number, and the text as
        queued; 400 when the text is empty or too long."""
        try:
            text = clean_stimulus(text)
            return await self.engine.rounds.inject(session, text), text
        except InputError as exc:
            raise HTTPError(400, str(exc), code="invalid_stimulus") from None

    async def start_round(
        self,
        situation: str | None,
        session_id: str | None,
        *,
        rounds: int = 1,
        seed: int | None = None,
        stimulus: str | None = None,
        user: User,
    ) -> Started:
        """Start a run of ``rounds`` rounds (with no ``situation``, continuing the session's
        newest run) for ``user``, within the user's limits. Errors as HTTP."""
        engine = self.engine
        known = None
        if session_id is not None:
            known = await self.session(session_id, user)  # loaded without blocking, if must be
        if user.id is not None:
            self.limits.check(user, await engine.rounds.running_of(user.id))
        try:
            if situation is not None:
                clean_situation(situation, self.settings.max_situation_chars)
            await engine.rounds.afford(situation, known)
        except InputError as exc:
            raise HTTPError(400, str(exc), code="invalid_situation") from None
        except OverBudget as exc:
            raise HTTPError(402, str(exc), code="over_budget") from None
        try:
            # The round runs as a task that has not started yet, so every event after this
            # id is the round's.
            after = await engine.bus.last_id(session_id) if session_id else 0
            # A bad stimulus is refused before anything starts.
            opening = [clean_stimulus(stimulus)] if stimulus is not None else []
            session, round_id = await engine.rounds.launch(
                situation,
                session_id,
                rounds=rounds,
                seed=seed,
                scheduled={1: opening},
                owner=user.id,
            )
        except InputError as exc:
            raise HTTPError(400, str(exc), code="invalid_situation") from None
        except RoundInProgress:
            raise HTTPError(
                409,
                "a round is already running in this session; wait for it or stop it",
                code="round_in_progress",
            ) from None
        except TooManyRounds as exc:
            raise HTTPError(
                429,
                f"the council is busy: {exc.running} rounds are running, the most this "
                "server runs at once; try again in a few seconds",
                code="too_many_rounds",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
        self.limits.started(user)
        # The round is not among the session's yet, unless another worker ran it and this
        # one read the session from the store after that worker saved its start.
        ids = session.rounds
        index = ids.index(round_id) + 1 if round_id in ids else len(ids) + 1
        return Started(session, round_id, after, index)


def visible(session: Session, user: User) -> bool:
    """Whether ``user`` may see ``session``: its owner, or an admin."""
    return user.admin or (user.id is not None and session.owner == user.id)
