"""The recorder: folds the events a session publishes into the store.

The engine hands it every event it publishes (:meth:`Recorder.observe`: no I/O, no await).
A round or a turn starting or ending is queued as a write and wakes the writer at once; a
delta only grows its turn's text in memory, and the writer saves the running turns' text
every ``save_interval`` seconds, and before a read that must see it. So there is never a
database write per delta, nor one per running turn each time another turn starts or ends,
and a crash loses at most ``save_interval`` seconds of one turn's text.

One writer task saves the queued writes in order, one transaction per batch, in the store's
worker thread. Reads that must agree with the live stream (a transcript and the id of the last
event it reflects) queue behind the writes they must see.

Event ids: before an event is published, :meth:`Recorder.reserve` makes sure the session's
stored high-water mark is above its id, reserving ``id_block`` ids at a time (as a database
sequence caches values). A restarted session numbers after the mark, so a client that saw
ids up to the crash never mistakes a new event for one it already has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import anyio
from anyio.abc import TaskGroup

from ..errors import StoreError
from ..events import (
    AgentComplete,
    AgentStarted,
    AgentUpdate,
    ConversationState,
    Event,
    RoundComplete,
    RoundStarted,
    utc_now,
)
from ..transcript import Transcript, Turn
from . import queries
from .connection import Connection
from .database import Store, Write
from .records import SessionSummary

log = logging.getLogger(__name__)

T = TypeVar("T")
Read = Callable[[Connection, int | None], T]
"""A read run after the writes it must see: (connection, last event id of the session)."""

SAVE_INTERVAL = 2.0
ID_BLOCK = 1000


class _Pending(Generic[T]):
    def __init__(self, session_id: str | None, fn: Read[T]) -> None:
        self.session_id = session_id
        self.fn = fn
        self.done = anyio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    def settle(self, result: Any, error: BaseException | None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()

    async def wait(self) -> T:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        return cast(T, self.result)


def _bind(fn: Read[T], as_of: int | None, conn: Connection) -> T:
    return fn(conn, as_of)


class Recorder:
    """Saves what the engine publishes. Use ``async with Recorder(store)``."""

    def __init__(
        self, store: Store, *, save_interval: float = SAVE_INTERVAL, id_block: int = ID_BLOCK
    ) -> None:
        self.store = store
        self.save_interval = save_interval
        self.id_block = id_block
        self._writes: list[Write] = []
        self._requests: list[_Pending[Any]] = []
        # Session id -> its running rounds, folded from the events: their turns' text so far.
        self._live: dict[str, Transcript] = {}
        self._dirty: dict[str, tuple[str, Turn]] = {}  # turn id -> (session id, turn)
        self._last_id: dict[str, int] = {}  # session id -> last event observed
        self._reserved: dict[str, int] = {}  # session id -> stored high-water mark
        self._touched: set[str] = set()
        self._deleted: set[str] = set()
        self._wake = anyio.Event()
        self._text_saved_at = 0.0  # when the running turns' text was last saved (loop clock)
        self._reserve_lock = anyio.Lock()
        self._tg: TaskGroup | None = None
        self._stopping = False

    async def __aenter__(self) -> Recorder:
        self._text_saved_at = anyio.current_time()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._write_loop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._stopping = True
        self._wake.set()
        # The last batch is what a stopped round said last: let it land whatever happens.
        self._tg.cancel_scope.shield = True
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            self._tg = None

    # --- what the engine calls ---------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Fold a just-published event in. Never blocks, never fails the publisher."""
        session_id = event.session_id
        if session_id in self._deleted:
            return
        self._last_id[session_id] = event.id
        payload = event.payload
        live = self._live.get(session_id)
        if live is None and isinstance(payload, RoundStarted):
            live = self._live[session_id] = Transcript(id=session_id)
        # Only running rounds are folded: what the others change is saved as it comes.
        changed = live.apply(event) if live is not None else None
        if isinstance(payload, AgentUpdate):
            if isinstance(changed, Turn):
                self._dirty[changed.id] = (session_id, changed)
            return
        write = self._write_for(payload, live)
        if write is not None:
            self._writes.append(write)
            self._touched.add(session_id)
            self._wake.set()

    async def reserve(
        self, session_id: str, next_id: int, title: str = "", owner: int | None = None
    ) -> int:
        """Make sure the stored high-water mark is above ``next_id``: the mark, as far as
        this process knows.

        Strictly above: every id published before a crash is then below the mark, so a
        client from before it is always behind a restarted session's first id, and is
        sent the stored history (with its interrupted turns) before anything new.
        """
        if next_id < self._reserved.get(session_id, 0) or session_id in self._deleted:
            return self._reserved.get(session_id, 0)
        async with self._reserve_lock:
            if next_id < self._reserved.get(session_id, 0) or session_id in self._deleted:
                return self._reserved.get(session_id, 0)
            ceiling = next_id + self.id_block - 1
            try:
                await self.store.write(
                    partial(
                        queries.reserve_ids,
                        session_id=session_id,
                        ceiling=ceiling,
                        title=title,
                        now=utc_now(),
                        owner=owner,
                    )
                )
            except StoreError as exc:
                # The conversation goes on; only its numbering after a crash is at risk.
                log.error("cannot reserve event ids for session %s: %s", session_id, exc)
            self._reserved[session_id] = ceiling
            return ceiling

    def adopt(self, session_id: str, event_hwm: int) -> None:
        """A stored session is back in memory: its ids up to ``event_hwm`` are reserved."""
        self._reserved[session_id] = max(self._reserved.get(session_id, 0), event_hwm)

    async def forget(self, session_id: str, last_id: int) -> None:
        """The session left memory after event ``last_id``, with nothing running: drop what
        is kept of it here, and give back the ids reserved beyond ``last_id``, so that it
        numbers on from ``last_id + 1`` when it comes back."""
        async with self._reserve_lock:
            reserved = self._reserved.pop(session_id, None)
            self._last_id.pop(session_id, None)
            self._drop_live(session_id)
            if reserved is not None and last_id and session_id not in self._deleted:
                self._writes.append(
                    partial(
                        queries.release_ids,
                        session_id=session_id,
                        reserved=reserved,
                        last_id=last_id,
                    )
                )
                self._wake.set()

    async def call(self, session_id: str | None, fn: Read[T]) -> T:
        """Run ``fn`` after every write observed so far, with the id of the last event of
        ``session_id`` those writes include (None: none observed in this process)."""
        if self._tg is None or self._stopping:
            as_of = self._last_id.get(session_id) if session_id else None
            return await self.store.run(partial(_bind, fn, as_of))
        pending: _Pending[T] = _Pending(session_id, fn)
        self._requests.append(pending)
        self._wake.set()
        return await pending.wait()

    async def flush(self) -> None:
        """Return once everything observed so far is saved."""
        await self.call(None, lambda conn, as_of: None)

    async def delete(self, session_id: str) -> bool:
        """Forget the session and delete it from the store. False when it was not stored."""
        async with self._reserve_lock:
            self.deleted(session_id)
            return await self.call(
                session_id,
                lambda conn, as_of: queries.delete_session(conn, session_id=session_id),
            )

    def deleted(self, session_id: str) -> None:
        """Forget the session here, for good: it is deleted (maybe by another process)."""
        self._deleted.add(session_id)
        self._drop_live(session_id)
        self._last_id.pop(session_id, None)
        self._reserved.pop(session_id, None)
        self._touched.discard(session_id)

    # --- reads that agree with the live streams ----------------------------------------

    async def transcript(self, session_id: str, *, saved: bool = False) -> Transcript | None:
        """The session as stored after every write observed so far; its ``last_event_id``
        the last event of the session those writes include. ``saved``: the session runs in
        another process, which writes it: the last event that process has saved
        everything up to."""
        if saved:
            return await self.call(
                None, lambda conn, _: queries.transcript(conn, session_id=session_id, saved=True)
            )
        return await self.call(
            session_id,
            lambda conn, as_of: queries.transcript(conn, session_id=session_id, as_of=as_of),
        )

    async def list_sessions(
        self, *, limit: int = 50, offset: int = 0, owner: int | None = None
    ) -> list[SessionSummary]:
        """Stored sessions of ``owner`` (None: all), the most recently active first."""
        return await self.call(
            None,
            lambda conn, _: queries.list_sessions(conn, limit=limit, offset=offset, owner=owner),
        )

    async def count_sessions(self, *, owner: int | None = None) -> int:
        return await self.call(None, lambda conn, _: queries.count_sessions(conn, owner=owner))

    # --- folding events into writes ----------------------------------------------------

    def _write_for(self, payload: object, live: Transcript | None) -> Write | None:
        if isinstance(payload, RoundStarted):
            return partial(queries.insert_round, started=payload)
        if isinstance(payload, AgentStarted):
            round_ = live.round(payload.round_id) if live is not None else None
            position = len(round_.turns) - 1 if round_ is not None else 0
            return partial(queries.insert_turn, started=payload, position=position)
        if isinstance(payload, AgentComplete):
            self._dirty.pop(payload.turn_id, None)
            return partial(queries.finish_turn, complete=payload)
        if isinstance(payload, ConversationState):
            return partial(queries.save_state, state=payload)
        if isinstance(payload, RoundComplete):
            # The round's text is all in the store now: only running rounds are kept.
            if live is not None:
                live.rounds[:] = [r for r in live.rounds if r.running]
                if not live.rounds:
                    del self._live[live.id]
            return partial(queries.finish_round, complete=payload)
        return None

    def _drop_live(self, session_id: str) -> None:
        self._live.pop(session_id, None)
        for turn_id in [t for t, (s, _) in self._dirty.items() if s == session_id]:
            del self._dirty[turn_id]

    # --- the writer --------------------------------------------------------------------

    def _take_writes(self, with_text: bool) -> list[Write]:
        """The queued writes, and with ``with_text`` the running turns' text as it stands."""
        writes, self._writes = self._writes, []
        dirty: dict[str, tuple[str, Turn]] = {}
        if with_text:
            dirty, self._dirty = self._dirty, {}
        for turn_id, (session_id, turn) in dirty.items():
            writes.append(
                partial(
                    queries.save_partial, turn_id=turn_id, text=turn.text, streaming=turn.streaming
                )
            )
            self._touched.add(session_id)
        now = utc_now()
        # Saved up to its last event, unless some of its text waits for the next save.
        waiting = {session_id for session_id, _ in self._dirty.values()}
        # In one order, so that two processes' batches never wait on each other's rows.
        writes.extend(
            partial(
                queries.touch_session,
                session_id=s,
                updated=now,
                saved_id=None if s in waiting else self._last_id.get(s),
            )
            for s in sorted(self._touched)
        )
        self._touched.clear()
        return writes

    async def _write_loop(self) -> None:
        while True:
            # Woken by a structural write or a read, or when the running turns' text is due.
            due = self._text_saved_at + self.save_interval - anyio.current_time()
            with anyio.move_on_after(max(0.0, due)):
                await self._wake.wait()
            self._wake = anyio.Event()
            stopping = self._stopping
            await self._write_batch(stopping)
            if stopping:
                return

    async def _write_batch(self, stopping: bool = False) -> None:
        # Everything up to the first await happens at one instant: the writes and the
        # ``as_of`` ids handed to the reads describe the same moment.
        now = anyio.current_time()
        # The running turns' text when it is due, or a read must see it, or at the end; not
        # each time a turn of another round starts or ends (with many rounds at once, that
        # is many times a second).
        with_text = (
            stopping or bool(self._requests) or now >= self._text_saved_at + self.save_interval
        )
        if with_text:
            self._text_saved_at = now
        writes = self._take_writes(with_text)
        requests, self._requests = self._requests, []
        if not writes and not requests:
            return
        bound = [
            partial(_bind, r.fn, self._last_id.get(r.session_id) if r.session_id else None)
            for r in requests
        ]
        try:
            try:
                outcomes = await self.store.apply(writes, bound)
            except Exception as exc:
                log.error("cannot save to %s: %s", self.store.path, exc)
                outcomes = [(None, exc)] * len(requests)
            for request, (result, error) in zip(requests, outcomes, strict=True):
                request.settle(result, error)
        finally:
            # Cancelled mid-batch: nobody waits for ever.
            for request in requests:
                request.settle(None, StoreError(self.store.path, "the recorder stopped"))
