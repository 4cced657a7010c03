"""The council: who hears whom, each agent's memory, and the round runner.

A round asks each archetype in turn. Every turn publishes ``agent_processing_started``, its
deltas, and exactly one ``agent_processing_complete``, whatever happens to the provider or
to the task running it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field

import anyio

from .archetypes import ARCHETYPES, Archetype
from .config import Settings
from .errors import BusUnavailable, InputError, LLMError, OverBudget, StreamBroken
from .events import (
    AgentComplete,
    AgentStarted,
    AgentUpdate,
    CompleteMeta,
    ConversationState,
    EmergencyStatus,
    Ending,
    Event,
    NetworkUpdate,
    Payload,
    RoundComplete,
    RoundContext,
    RoundStarted,
    TurnContext,
)
from .llm import CompletionRequest, LLMClient, Reply
from .llm.cost import turn_cost, worst_case
from .logs import LogIds
from .progress import LengthHistory, ProgressEstimate
from .prompts import build_messages
from .sentiment import NEUTRAL_FALLBACK, analyse
from .state import EmergencyMode, Said, guidance, measure
from .transcript import Heard, Path, PathKind, RoundState, Status, total_cost, usd

log = logging.getLogger(__name__)

Publish = Callable[[Payload], Awaitable[Event]]

NORMAL_PATHS: tuple[tuple[str, str], ...] = (
    ("Shadow", "Persona"),
    ("Self", "Ego"),
    ("Anima/Animus", "Ego"),
    ("Shadow", "Self"),
    ("Persona", "Ego"),
)
EMERGENCY_PATHS: tuple[tuple[str, str], ...] = (
    ("Shadow", "Anima/Animus"),
    ("Persona", "Self"),
    ("Shadow", "Ego"),
    ("Anima/Animus", "Persona"),
)


MAX_STIMULUS_CHARS = 500


def clean_situation(text: str, max_chars: int) -> str:
    """The situation as we will use it (its lines kept), or :class:`InputError`."""
    text = "".join(ch for ch in text if ch in "\n\t" or ch.isprintable()).strip()
    return _bounded(text, "the situation", max_chars, "describe a situation: the text is empty")


def clean_stimulus(text: str) -> str:
    """A stimulus as we will use it (one line), or :class:`InputError`."""
    text = " ".join("".join(ch for ch in text if ch.isprintable() or ch.isspace()).split())
    return _bounded(text, "the stimulus", MAX_STIMULUS_CHARS, "a stimulus needs some text")


def _bounded(text: str, what: str, max_chars: int, empty: str) -> str:
    if not text:
        raise InputError(empty)
    if len(text) > max_chars:
        raise InputError(f"{what} is too long ({len(text)} characters; the limit is {max_chars})")
    return text


def final_text(agent_id: str, text: str, status: Status, error: LLMError | None) -> str:
    """A turn's ``final_content``: its text, and a line saying why it is missing or short.

    The line is not streamed: the deltas are the text the provider sent, nothing else.
    """
    if status is Status.ERROR:
        if not text:
            return f"[{agent_id} is experiencing technical difficulties]"
        if isinstance(error, StreamBroken) and error.error_class != "Timeout":
            return f"{text}\n\n[{agent_id}'s reply was cut off by the provider]"
        why = f": {error.message}" if error is not None else ""
        return f"{text}\n\n[{agent_id}'s reply was cut off{why}]"
    if status is Status.CANCELLED and not text:
        return f"[{agent_id} was stopped]"
    return text


async def check_budget(
    settings: Settings, spent: float, model: str, messages: list[dict[str, str]], what: str
) -> None:
    """:class:`OverBudget` when ``what`` (a turn of ``model`` with this prompt) could take a
    session that has spent ``spent`` past its budget, or when the model's price is unknown.
    A free model always fits."""
    budget = settings.budget_usd
    if not budget:
        return
    worst = await worst_case(model, messages, settings.max_tokens)
    if worst is None:
        raise OverBudget(
            f"the price of {model} is unknown, so this session's {usd(budget)} budget "
            "cannot be kept"
        )
    if worst > 0 and spent + worst > budget:
        left = max(0.0, budget - spent)
        raise OverBudget(
            f"{what} could cost {usd(worst)} and this session has {usd(left)} of its "
            f"{usd(budget)} budget left"
        )


class Network:
    """Communication paths between agents. Emergency paths are open while the council's
    emergency mode is on."""

    def __init__(self) -> None:
        self.emergency = False

    def paths(self) -> Iterable[tuple[str, str]]:
        """The open paths."""
        yield from NORMAL_PATHS
        if self.emergency:
            yield from EMERGENCY_PATHS

    def describe(self) -> tuple[Path, ...]:
        """Every path, with its kind and whether it is open."""
        return tuple(
            Path(a=a, b=b, kind=PathKind.NORMAL, active=True) for a, b in NORMAL_PATHS
        ) + tuple(
            Path(a=a, b=b, kind=PathKind.EMERGENCY, active=self.emergency)
            for a, b in EMERGENCY_PATHS
        )

    def hears(self, agent_id: str) -> list[str]:
        """The agents ``agent_id`` can hear, in council order."""
        return [h.agent_id for h in self.heard(agent_id)]

    def heard(self, agent_id: str) -> tuple[Heard, ...]:
        """The agents ``agent_id`` can hear, in council order, and whether along an
        emergency path."""
        emergency = {b for a, b in EMERGENCY_PATHS if a == agent_id}
        emergency |= {a for a, b in EMERGENCY_PATHS if b == agent_id}
        linked = {b for a, b in self.paths() if a == agent_id}
        linked |= {a for a, b in self.paths() if b == agent_id}
        return tuple(
            Heard(agent_id=a.agent_id, emergency=a.agent_id in emergency)
            for a in ARCHETYPES
            if a.agent_id in linked
        )


_SENTENCE = re.compile(r"[^.!?]*[.!?]")


def left_off(reply: str | None) -> str | None:
    """Where a round left the conversation, from Ego's reply: the question it closed with
    (its last sentence otherwise)."""
    if not reply:
        return None
    sentences = [s.strip() for s in _SENTENCE.findall(" ".join(reply.split())) if s.strip()]
    if not sentences:
        return None
    questions = [s for s in sentences if s.endswith("?")]
    return f"Ego closed the last round with: {(questions or sentences)[-1]}"


@dataclass
class AgentState:
    archetype: Archetype
    memory_rounds: int
    interaction_count: int = 0
    memory: deque[tuple[str, str]] = field(init=False)
    lengths: LengthHistory = field(default_factory=LengthHistory)

    def __post_init__(self) -> None:
        self.memory = deque(maxlen=self.memory_rounds)

    @property
    def has_memory(self) -> bool:
        return bool(self.memory)

    def remember(self, situation: str, reply: str) -> None:
        if self.memory_rounds:
            self.memory.append((situation, reply))


class Council:
    """The five agents of one session, with their memories and who hears whom."""

    def __init__(self, settings: Settings, llm: LLMClient) -> None:
        self.settings = settings
        self.llm = llm
        self.network = Network()
        self.agents = {a.agent_id: AgentState(a, settings.memory_rounds) for a in ARCHETYPES}
        self.latest: dict[str, str] = {}
        self.emergency = EmergencyMode()
        self.guidance: tuple[str, ...] = ()  # for the next round's prompts
        # What the session's turns cost, those whose cost is known (None: none is).
        self.spent_usd: float | None = None
        self._turn_scopes: dict[str, anyio.CancelScope] = {}

    def restore_state(self, states: Iterable[tuple[int, RoundState]]) -> None:
        """Carry on from the states of a stored session's rounds (in order)."""
        for index, state in states:
            self.emergency, _ = self.emergency.step(state.metrics.stagnation, index)
            self.guidance = state.guidance
        self.network.emergency = self.emergency.active

    def left_off(self) -> str | None:
        """Where the newest round left the conversation (for the next one's situation)."""
        return left_off(self.latest.get("Ego"))

    async def afford(self, model: str, messages: list[dict[str, str]], what: str) -> None:
        """:func:`check_budget` for this session."""
        await check_budget(self.settings, self.spent_usd or 0.0, model, messages, what)

    def cancel_turn(self, turn_id: str) -> bool:
        scope = self._turn_scopes.get(turn_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def run_round(
        self,
        publish: Publish,
        ctx: RoundContext,
        *,
        seed: int | None = None,
        log_ids: LogIds | None = None,
    ) -> Status:
        """Run one round: each agent's turn in council order. Its status: error when a
        turn failed. ``log_ids``: where each turn binds its id for the log lines."""
        started = time.perf_counter()
        await publish(RoundStarted.of(ctx, (a.agent_id for a in ARCHETYPES)))
        turns = 0
        status: Ending = Status.OK
        said: list[Said] = []
        costs: list[float | None] = []
        reason: str | None = None
        try:
            for archetype in ARCHETYPES:
                turn_id = uuid.uuid4().hex[:12]
                # Every log line of the turn names it.
                with log_ids.bind(turn_id=turn_id) if log_ids else nullcontext():
                    turn_status = await self._turn(
                        publish, ctx, self.agents[archetype.agent_id], seed, said, costs, turn_id
                    )
                turns += 1
                if turn_status is Status.ERROR:
                    status = Status.ERROR
        except OverBudget as exc:
            # Stopped before a turn, as a person stopping it would; the run ends here.
            status, reason = Status.CANCELLED, str(exc)
            log.info("round %s of session %s stopped: %s", ctx.round_id, ctx.session_id, reason)
        except anyio.get_cancelled_exc_class():
            status = Status.CANCELLED
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await publish(
                    RoundComplete(
                        session_id=ctx.session_id,
                        round_id=ctx.round_id,
                        index=ctx.index,
                        status=status,
                        turns=turns,
                        duration_ms=int((time.perf_counter() - started) * 1000),
                        run_index=ctx.run_index,
                        rounds=ctx.rounds,
                        cost_usd=total_cost(costs),
                        session_cost_usd=self.spent_usd,
                        reason=reason,
                    )
                )
                await self._assess(publish, ctx, said)
        return status

    async def _assess(self, publish: Publish, ctx: RoundContext, said: list[Said]) -> None:
        """The conversation's state after the round, the round's last event: the guidance
        for the next round, and emergency mode switched on or off first (with the paths it
        opens or closes). A round in which nobody spoke leaves the mode as it was."""
        metrics = measure(said)
        if said:
            self.guidance = guidance(metrics)
            self.emergency, switch = self.emergency.step(metrics.stagnation, ctx.index)
            if switch is not None:
                self.network.emergency = switch.active
                await publish(
                    EmergencyStatus(
                        session_id=ctx.session_id,
                        round_id=ctx.round_id,
                        active=switch.active,
                        reason=switch.reason,
                        stagnation=switch.stagnation,
                        round=switch.round,
                    )
                )
                await publish(self.network_update(ctx.session_id, ctx.round_id))
        await publish(
            ConversationState(
                session_id=ctx.session_id,
                round_id=ctx.round_id,
                round=ctx.index,
                metrics=metrics,
                guidance=self.guidance,
                emergency=self.emergency.active,
            )
        )

    def network_update(self, session_id: str, round_id: str | None) -> NetworkUpdate:
        return NetworkUpdate(
            session_id=session_id, round_id=round_id, paths=self.network.describe()
        )

    async def _turn(
        self,
        publish: Publish,
        round_ctx: RoundContext,
        agent: AgentState,
        seed: int | None,
        said: list[Said],
        costs: list[float | None],
        turn_id: str,
    ) -> Status:
        """One agent's turn; :class:`OverBudget` (before it starts) when the session's
        budget cannot pay for it."""
        archetype = agent.archetype
        ctx = round_ctx.turn(turn_id, archetype, self.settings.model_for(archetype.agent_id))
        heard = tuple(
            h for h in self.network.heard(archetype.agent_id) if h.agent_id in self.latest
        )
        others = [(h.agent_id, self.latest[h.agent_id]) for h in heard]
        request = CompletionRequest(
            model=ctx.model,
            messages=build_messages(
                archetype,
                round_ctx.base,
                memory=list(agent.memory),
                others=others,
                guidance=self.guidance,
                stimulus=round_ctx.stimulus,
                left_off=round_ctx.left_off,
            ),
            temperature=archetype.temperature,
            max_tokens=self.settings.max_tokens,
            seed=None if seed is None else seed + agent.interaction_count,
        )
        await self.afford(request.model, request.messages, f"{archetype.agent_id}'s turn")
        await publish(
            AgentStarted.of(
                ctx,
                interaction_count=agent.interaction_count,
                has_memory=agent.has_memory,
                heard=heard,
                guidance=self.guidance,
            )
        )

        progress = ProgressEstimate(agent.lengths.average)
        stream = self.llm.stream(request)
        status: Ending = Status.CANCELLED
        error: LLMError | None = None
        try:
            with anyio.CancelScope() as scope:
                self._turn_scopes[ctx.turn_id] = scope
                try:
                    async with stream:
                        async for delta in stream:
                            await publish(
                                AgentUpdate.of(
                                    ctx,
                                    delta,
                                    progress=progress.add(delta),
                                    streaming=stream.reply.streaming or "native",
                                )
                            )
                    status = Status.OK
                except LLMError as exc:
                    status, error = Status.ERROR, exc
                except BusUnavailable:
                    raise  # the round ends (see Rounds.run), not just this turn
                except Exception as exc:
                    log.exception("%s: the turn failed", archetype.agent_id)
                    status = Status.ERROR
                    error = LLMError("internal error", error_class=type(exc).__name__)
        finally:
            self._turn_scopes.pop(ctx.turn_id, None)
            with anyio.CancelScope(shield=True):
                score, cost = await self._complete(publish, ctx, agent, stream.reply, status, error)
                costs.append(cost)
                if stream.reply.text:
                    said.append(Said(stream.reply.text, score))
        return status

    async def _complete(
        self,
        publish: Publish,
        ctx: TurnContext,
        agent: AgentState,
        reply: Reply,
        status: Ending,
        error: LLMError | None,
    ) -> tuple[float, float | None]:
        """Publish the turn's end; its sentiment score and its cost."""
        text = reply.text
        if error is not None:
            log.warning("%s: %s (%s)", ctx.agent_id, error.message, error.error_class)
        final = final_text(ctx.agent_id, text, status, error)
        # A reply joins the agent's memory when it has something to remember. What it is
        # remembered to have said is what was published (and stored, and remembered again
        # by a session restored from the store).
        remembered = status is Status.OK or bool(text)
        if remembered:
            agent.interaction_count += 1
            agent.lengths.record(len(final))
            agent.remember(ctx.situation, final)
            self.latest[ctx.agent_id] = final
        sentiment = await anyio.to_thread.run_sync(analyse, text) if text else NEUTRAL_FALLBACK
        try:
            cost = await turn_cost(reply.model, reply.usage)
        except Exception:  # a price must never keep a turn from completing
            log.exception("%s: cannot price the turn", ctx.agent_id)
            cost = None
        if cost is not None:
            self.spent_usd = (self.spent_usd or 0.0) + cost
        await publish(
            AgentComplete(
                session_id=ctx.session_id,
                round_id=ctx.round_id,
                agent_id=ctx.agent_id,
                final_content=final,
                sentiment=sentiment.scores(),
                metadata=CompleteMeta(
                    situation=ctx.situation,
                    interaction_count=agent.interaction_count,
                    has_memory=agent.has_memory,
                    agent_type=ctx.agent.agent_type,
                    turn_id=ctx.turn_id,
                    status=status,
                    streaming=reply.streaming,
                    model=reply.model,
                    usage=dict(reply.usage) if reply.usage else None,
                    cost_usd=cost,
                    duration_ms=reply.elapsed_ms(),
                    first_token_ms=reply.first_token_ms,
                    attempts=reply.attempts,
                    reasoning=reply.reasoning or None,
                    error_class=error.error_class if error else None,
                    error=error.message if error else None,
                    partial=isinstance(error, StreamBroken) if error else None,
                    remembered=remembered,
                ),
            )
        )
        return sentiment.polarity, cost
