"""Stored sessions: what the web layer lists, reads, renames and deletes."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError, SessionNotFound
from ..events import utc_now
from ..store import Recorder, SessionSummary, Store
from ..store.previews import Preview, previews
from ..store.search import SearchPage, search_sessions
from ..transcript import Transcript
from .live import LiveSessions
from .rounds import Rounds, one_line

MAX_TITLE_CHARS = 200


def clean_title(title: str) -> str:
    """A session title as we will store it, or :class:`InputError`."""
    text = one_line("".join(ch for ch in title if ch.isprintable() or ch.isspace()))
    if not text:
        raise InputError("a session title cannot be empty")
    if len(text) > MAX_TITLE_CHARS:
        raise InputError(f"the title is too long (the limit is {MAX_TITLE_CHARS} characters)")
    return text


class Archive:
    def __init__(
        self, live: LiveSessions, rounds: Rounds, store: Store, recorder: Recorder
    ) -> None:
        self.live = live
        self.rounds = rounds
        self.store = store
        self.recorder = recorder

    async def list(
        self, *, limit: int = 50, offset: int = 0, owner: int | None = None
    ) -> list[SessionSummary]:
        """Stored sessions of the user ``owner`` (None: everyone's), the most recently
        active first."""
        return await self.recorder.list_sessions(limit=limit, offset=offset, owner=owner)

    async def count(self, *, owner: int | None = None) -> int:
        return await self.recorder.count_sessions(owner=owner)

    async def transcript(self, session_id: str, *, elsewhere: bool = False) -> Transcript:
        """The session's rounds and turns so far, running ones with their text so far.

        Its ``last_event_id`` is the last event it reflects: follow the session's events
        after it to stay live with no gap and no duplicate. ``elsewhere``: among several
        workers, for a session that runs on another one (which writes it to the store).
        """
        found = await self.recorder.transcript(session_id, saved=elsewhere)
        session = self.live.get(session_id)
        if found is not None:
            if not elsewhere and session is not None and session.running:
                # Running here: nothing was published beyond the bus's last id. Between the
                # store's reservation of a new session's ids and its first event, the store
                # alone would say the reservation's mark, ahead of every id.
                found.last_event_id = min(
                    found.last_event_id, await self.live.bus.last_id(session_id)
                )
            return found
        if session is None:
            raise SessionNotFound(session_id)
        # Created, but its first round has not published yet.
        now = utc_now()
        return Transcript(
            id=session_id,
            title=session.title,
            created=now,
            updated=now,
            last_event_id=await self.live.bus.last_id(session_id),
        )

    async def rename(self, session_id: str, title: str) -> str:
        """Rename the session; returns the title as stored. :class:`InputError` when the
        title is empty or too long."""
        text = clean_title(title)
        session = self.live.get(session_id)
        if session is not None:
            session.title = text
        if not await self.store.rename_session(session_id, text) and session is None:
            raise SessionNotFound(session_id)
        return text

    async def delete(self, session_id: str) -> None:
        """Stop the session's run (wherever it runs), forget the session, delete it from
        the store; the other workers forget it too."""
        session = self.live.get(session_id)
        await self.rounds.stop_anywhere_and_wait(session_id)
        self.live.forget(session_id)
        deleted = await self.recorder.delete(session_id)
        if self.rounds.cluster is not None:
            await self.rounds.cluster.forget(session_id)
        if not deleted and session is None:
            raise SessionNotFound(session_id)

    async def search(
        self, terms: Sequence[str], *, limit: int, offset: int, owner: int | None = None
    ) -> SearchPage:
        """Stored sessions of ``owner`` (None: everyone's) that hold every one of ``terms``
        in a situation, stimulus or reply, each with its best passage."""
        return await self.recorder.call(
            None,
            lambda conn, _: search_sessions(
                conn, terms=terms, owner=owner, limit=limit, offset=offset
            ),
        )

    async def previews(self, session_ids: Sequence[str]) -> dict[str, Preview]:
        """What each of the sessions said last, for the sessions list."""
        return await self.recorder.call(
            None, lambda conn, _: previews(conn, session_ids=session_ids)
        )
