"""Rounds: claiming a session for a run, running it, stopping it.

A run is one or more rounds on one situation. It runs as a task of the engine's task group,
so it keeps going when its viewer leaves; only :meth:`Rounds.stop` (or the engine stopping)
stops it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..archetypes import ARCHETYPES
from ..config import Settings
from ..council import check_budget, clean_situation, clean_stimulus
from ..errors import (
    BusUnavailable,
    InputError,
    LeaseLost,
    OverBudget,
    RoundInProgress,
    TooManyRounds,
)
from ..events import Event, RoundContext, StimulusInjected
from ..logs import LogIds
from ..transcript import Status
from .cluster import Cluster
from .live import LiveSessions, Session
from .publisher import Publisher
from .takeover import endings

log = logging.getLogger(__name__)

WIND_DOWN = 10.0
"""Seconds a stopped run is given to publish its last events."""


def one_line(text: str) -> str:
    return " ".join(text.split())


async def afford(settings: Settings, situation: str | None, session: Session | None = None) -> None:
    """:class:`~psyche_sse.errors.OverBudget` when the session's budget (a new session's,
    without one) cannot pay for the first turn of a run on ``situation`` (None: the
    session's newest one), counting the situation alone as its prompt. Nothing when there is
    no budget."""
    if not settings.budget_usd:
        return
    text = situation if situation is not None else (session.base if session else None)
    spent = (session.council.spent_usd if session is not None else None) or 0.0
    model = settings.model_for(ARCHETYPES[0].agent_id)
    messages = [{"role": "user", "content": text or ""}]
    try:
        await check_budget(settings, spent, model, messages, "its first turn")
    except OverBudget as exc:
        raise OverBudget(f"this round cannot start: {exc}") from None


class Rounds:
    def __init__(
        self,
        settings: Settings,
        live: LiveSessions,
        publish: Publisher,
        tg: TaskGroup,
        log_ids: LogIds,
        cluster: Cluster | None = None,
    ) -> None:
        self.settings = settings
        self.live = live
        self.publish = publish
        self._tg = tg
        self.log_ids = log_ids
        self.cluster = cluster

    def prepare(
        self, situation: str | None, session_id: str | None = None, owner: int | None = None
    ) -> tuple[Session, str, str]:
        """Validate the input and claim the session for a new run: (session, round, text).
        With no ``situation``, the run continues the session's newest one.

        :class:`~psyche_sse.errors.InputError`, :class:`RoundInProgress`,
        :class:`TooManyRounds`, :class:`SessionNotFound`. A new session belongs to the
        user ``owner``."""
        session = self.live.new(owner) if session_id is None else self.live.find(session_id)
        if situation is None:
            if session.base is None:
                raise InputError("there is no earlier round to continue: describe a situation")
            text = session.base
        else:
            text = clean_situation(situation, self.settings.max_situation_chars)
        if session.running:
            raise RoundInProgress(f"session {session.id} already has a round running")
        if self.live.running >= self.settings.max_running_rounds:
            raise TooManyRounds(self.live.running)
        round_id = session.next_round_id()
        session.scope = anyio.CancelScope()
        session.finished = anyio.Event()
        session.current_round = round_id
        session.title = session.title or one_line(text)[:80]
        return session, round_id, text

    async def afford(self, situation: str | None, session: Session | None = None) -> None:
        """:func:`afford` with these settings."""
        await afford(self.settings, situation, session)

    async def run(
        self,
        session: Session,
        round_id: str,
        situation: str,
        *,
        rounds: int = 1,
        seed: int | None = None,
        scheduled: Mapping[int, Sequence[str]] | None = None,
    ) -> None:
        """Run ``rounds`` rounds (the first with ``round_id``) until done or stopped.

        A run that goes on from where the session's newest one stopped (the same situation)
        opens with where the council left it, as every later round of a run does.
        ``scheduled``: stimuli to inject before the run's round N (from 1), by N.
        """
        assert session.scope is not None, "call prepare first"
        council = session.council
        continuing = situation == session.base and bool(session.rounds)
        session.base = situation
        try:
            with session.scope:
                await self.publish(council.network_update(session.id, round_id))
                for index in range(rounds):
                    # The first round's id was taken when the run was claimed.
                    opens = None if index else round_id
                    for text in (scheduled or {}).get(index + 1, ()):
                        await self.inject(session, text, opens=opens)
                    if index:
                        round_id = session.next_round_id()
                        session.current_round = round_id
                    if self.cluster is not None:  # queued on whichever worker took them
                        session.stimuli.extend(await self.cluster.take_stimuli(session.id))
                    stimulus = "\n".join(session.stimuli) or None
                    session.stimuli.clear()
                    session.rounds.append(round_id)
                    ctx = RoundContext(
                        session.id,
                        round_id,
                        situation,
                        index=len(session.rounds),
                        rounds=rounds,
                        run_index=index + 1,
                        stimulus=stimulus,
                        left_off=council.left_off() if index or continuing else None,
                    )
                    with self.log_ids.bind(session_id=session.id, round_id=round_id):
                        await council.run_round(self.publish, ctx, seed=seed, log_ids=self.log_ids)
        except LeaseLost as exc:
            # The worker that took it over ends it, in the stream and in the store.
            log.error("round %s of session %s stopped here: %s", round_id, session.id, exc)
        except BusUnavailable as exc:
            log.error("round %s of session %s ended: %s", round_id, session.id, exc)
            with anyio.CancelScope(shield=True):
                await self._end_in_store(session.id, f"error: {exc}")
        finally:
            session.scope = None
            session.current_round = None
            if session.finished is not None:
                session.finished.set()

    async def _end_in_store(self, session_id: str, why: str) -> None:
        """End the session's running round in the store alone (the bus is gone): its turns
        with their text so far, the round with ``why``. Its viewers are sent that when they
        come back."""
        recorder = self.live.recorder
        await recorder.flush()  # the turns' text so far, saved
        stored = await recorder.transcript(session_id)
        if stored is None:
            return
        # Numbered at the reserved mark: what is published later numbers beyond it.
        mark = await recorder.reserve(session_id, 0)
        for payload in endings(stored, why, Status.ERROR):
            recorder.observe(Event(mark, payload))
        await recorder.flush()

    def start(
        self,
        situation: str | None,
        session_id: str | None = None,
        *,
        rounds: int = 1,
        seed: int | None = None,
        scheduled: Mapping[int, Sequence[str]] | None = None,
        owner: int | None = None,
    ) -> tuple[Session, str]:
        """Start a run in the background; returns at once with its session and round id."""
        session, round_id, text = self.prepare(situation, session_id, owner)
        run = partial(
            self.run, session, round_id, text, rounds=rounds, seed=seed, scheduled=scheduled
        )
        self._tg.start_soon(self._run_logged, run, session, round_id)
        return session, round_id

    async def launch(
        self,
        situation: str | None,
        session_id: str | None = None,
        *,
        rounds: int = 1,
        seed: int | None = None,
        scheduled: Mapping[int, Sequence[str]] | None = None,
        owner: int | None = None,
    ) -> tuple[Session, str]:
        """:meth:`start`, among several workers: the session's lease is taken first
        (:class:`RoundInProgress` when another worker holds it), and the session is read
        again from the store, where the worker that ran its previous round left it."""
        start = partial(
            self.start, situation, rounds=rounds, seed=seed, scheduled=scheduled, owner=owner
        )
        cluster = self.cluster
        if cluster is None:
            return start(session_id)
        if self.settings.role == "deliver":
            return await self._hand_over(
                situation, session_id, rounds=rounds, seed=seed, scheduled=scheduled, owner=owner
            )
        if session_id is None:
            session, round_id = start(None)
            await cluster.claim(session.id, owner)  # a new id: nobody else knows it yet
            # Stored before its id is handed out, so that every worker finds it.
            await self.live.recorder.reserve(session.id, 1, session.title, session.owner)
            return session, round_id
        if not await cluster.claim(session_id, owner):
            raise RoundInProgress(f"session {session_id} already has a round running")
        try:
            await self.live.refresh(session_id)
            return start(session_id)
        except BaseException:
            await cluster.release(session_id)
            raise

    async def _hand_over(
        self,
        situation: str | None,
        session_id: str | None,
        *,
        rounds: int,
        seed: int | None,
        scheduled: Mapping[int, Sequence[str]] | None,
        owner: int | None,
    ) -> tuple[Session, str]:
        """:meth:`launch` on a delivering worker: a generating worker runs it."""
        assert self.cluster is not None
        request = {
            "situation": situation,
            "session_id": session_id,
            "rounds": rounds,
            "seed": seed,
            "scheduled": {str(k): list(v) for k, v in (scheduled or {}).items()},
            "owner": owner,
        }
        answer = await self.cluster.hand_over(request)
        if answer is None:
            raise BusUnavailable("no worker that runs rounds took this one")
        error = answer.get("error")
        if error == "in_progress":
            raise RoundInProgress(f"session {session_id} already has a round running")
        if error == "too_many":
            raise TooManyRounds(int(answer.get("running", 0)))
        if error is not None:
            raise InputError(str(answer.get("message", "the round could not start")))
        session = await self.live.refresh(str(answer["session_id"]))
        return session, str(answer["round_id"])

    async def take(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a run a delivering worker handed over (see :meth:`Cluster.take_runs`)."""
        try:
            session, round_id = await self.launch(
                request.get("situation"),
                request.get("session_id"),
                rounds=int(request.get("rounds", 1)),
                seed=request.get("seed"),
                scheduled={int(k): v for k, v in (request.get("scheduled") or {}).items()},
                owner=request.get("owner"),
            )
        except RoundInProgress:
            return {"error": "in_progress"}
        except TooManyRounds as exc:
            return {"error": "too_many", "running": exc.running}
        except (InputError, LookupError) as exc:
            return {"error": "input", "message": str(exc)}
        return {"session_id": session.id, "round_id": round_id}

    async def _run_logged(
        self, run: Callable[[], Awaitable[None]], session: Session, round_id: str
    ) -> None:
        try:
            await run()
        except Exception:
            log.exception("round %s of session %s failed", round_id, session.id)
        finally:
            if self.cluster is not None:
                with anyio.CancelScope(shield=True):
                    # The next worker to run the session reads it from the store: all of
                    # it is there before the lease goes.
                    await self.live.recorder.flush()
                    await self.cluster.release(session.id)

    async def inject(self, session: Session, text: str, *, opens: str | None = None) -> int:
        """Queue a stimulus for the session's next round (whose id is ``opens`` when it is
        already taken): the number of that round. :class:`~psyche_sse.errors.InputError`
        when the text is empty or too long. Among several workers it is queued in Redis,
        for whichever worker runs that round."""
        text = clean_stimulus(text)
        if self.cluster is not None and opens is None:
            await self.cluster.queue_stimulus(session.id, text)
        else:
            session.stimuli.append(text)
        number = len(session.rounds) + 1
        await self.publish(
            StimulusInjected(
                session_id=session.id,
                round_id=opens or session.upcoming,
                text=text,
                round=number,
            )
        )
        return number

    async def stop(self, session_id: str, turn_id: str | None = None) -> bool:
        """Stop the session's run, or only one turn of it, on whichever worker runs it. True
        when something was stopped."""
        session = self.live.find(session_id)
        if self.cluster is not None and not session.running:
            return bool(await self._stop_elsewhere(session_id, turn_id))
        return self.stop_here(session, turn_id)

    async def _stop_elsewhere(self, session_id: str, turn_id: str | None) -> bool | None:
        """Ask the other worker running the session to stop its run (or one turn): whether
        it did, or None when no other worker runs it."""
        cluster = self.cluster
        assert cluster is not None
        worker = await cluster.holder(session_id)
        if worker is None or worker == cluster.worker:
            return None
        answer = await cluster.ask(
            worker, {"op": "stop", "session_id": session_id, "turn_id": turn_id}
        )
        return bool(answer and answer.get("stopped"))

    def stop_here(self, session: Session, turn_id: str | None = None) -> bool:
        """:meth:`stop` for a session running in this process."""
        if turn_id is not None:
            return session.council.cancel_turn(turn_id)
        if session.scope is None:
            return False
        session.scope.cancel()
        return True

    async def control(self, message: dict[str, Any]) -> dict[str, Any]:
        """Answer a message another worker sent this one (see :class:`Cluster`)."""
        if message.get("op") == "stop":
            session = self.live.get(str(message.get("session_id")))
            turn_id = message.get("turn_id")
            stopped = session is not None and self.stop_here(
                session, str(turn_id) if turn_id is not None else None
            )
            return {"stopped": stopped}
        if message.get("op") == "forget":  # deleted on another worker
            session_id = str(message.get("session_id"))
            self.live.forget(session_id)
            self.live.recorder.deleted(session_id)
            return {}
        return {"error": "unknown message"}

    async def running_of(self, owner: int) -> int:
        """How many sessions have a run going for the user ``owner`` (on every worker)."""
        if self.cluster is None:
            return self.live.running_of(owner)
        return await self.cluster.running_of(owner)

    def lost(self, session_id: str) -> None:
        """Another worker took over the session's lease: its round stops here at once."""
        session = self.live.get(session_id)
        if session is not None and session.scope is not None:
            session.scope.cancel()

    async def stop_anywhere_and_wait(self, session_id: str) -> None:
        """Stop the session's run, on whichever worker runs it, and wait (up to
        :data:`WIND_DOWN` s) for it to end and be saved."""
        session = self.live.get(session_id)
        if session is not None and session.scope is not None:
            await self.stop_and_wait(session)
            return
        cluster = self.cluster
        if cluster is None or await self._stop_elsewhere(session_id, None) is None:
            return
        # Its worker saves the round, then lets the lease go (in another process: looked at).
        with anyio.move_on_after(WIND_DOWN):
            while await cluster.holder(session_id) is not None:  # noqa: ASYNC110
                await anyio.sleep(0.1)

    async def stop_and_wait(self, session: Session) -> None:
        """Stop the session's run and wait (up to :data:`WIND_DOWN` s) for it to end."""
        if session.scope is not None:
            session.scope.cancel()
            if session.finished is not None:
                with anyio.move_on_after(WIND_DOWN):
                    await session.finished.wait()

    def cancel_all(self) -> None:
        """Stop every run, and the tasks of the engine (it is stopping)."""
        self._tg.cancel_scope.cancel()
