"""What the status page shows: each configured model's health and the rounds running now.

:class:`Health` is owned by the engine and fed by :class:`~psyche_sse.metrics.ServiceMetrics` from
the events the engine publishes (and from the LLM client's retries and rate-limit waits);
:meth:`Health.snapshot` is the ``system_status`` event of a moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from .archetypes import ARCHETYPES
from .config import Settings
from .events import (
    AgentComplete,
    AgentStarted,
    ModelStatus,
    RoundComplete,
    RoundStarted,
    RunningRound,
    SystemStatus,
    utc_now,
)
from .llm.names import is_offline
from .transcript import Status


@dataclass(slots=True)
class ModelHealth:
    """One model's record since the process started."""

    model: str
    agents: list[str] = field(default_factory=list)
    turns_ok: int = 0
    turns_error: int = 0
    last_success: str | None = None
    last_error: str | None = None
    last_error_class: str | None = None
    retries: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_s: float = 0.0
    first_token_ms_total: int = 0
    first_token_count: int = 0

    def turn(self, status: Status, error_class: str | None, first_token_ms: int | None) -> None:
        now = utc_now()
        if status is Status.OK:
            self.turns_ok += 1
            self.last_success = now
        elif status is Status.ERROR:
            self.turns_error += 1
            self.last_error = now
            self.last_error_class = error_class or "Error"
        if first_token_ms is not None:
            self.first_token_ms_total += first_token_ms
            self.first_token_count += 1

    @property
    def mean_first_token_ms(self) -> float | None:
        if not self.first_token_count:
            return None
        return self.first_token_ms_total / self.first_token_count

    def view(self) -> ModelStatus:
        mean = self.mean_first_token_ms
        return ModelStatus(
            model=self.model,
            offline=is_offline(self.model),
            agents=tuple(self.agents),
            turns_ok=self.turns_ok,
            turns_error=self.turns_error,
            last_success=self.last_success,
            last_error=self.last_error,
            last_error_class=self.last_error_class,
            retries=self.retries,
            rate_limit_waits=self.rate_limit_waits,
            rate_limit_wait_s=round(self.rate_limit_wait_s, 3),
            mean_first_token_ms=None if mean is None else round(mean, 1),
        )


@dataclass(slots=True)
class _Running:
    session_id: str
    round_id: str
    index: int
    run_index: int
    rounds: int
    started: str
    speaking: str | None = None


class Health:
    """Each configured model's health and the rounds running, from the events published.

    ``sources`` tells what only the engine knows at the time of a snapshot: a session's title
    and viewers, the database's size, whether LiteLLM is loaded.
    """

    def __init__(self, settings: Settings) -> None:
        self.models: dict[str, ModelHealth] = {}
        for archetype in ARCHETYPES:
            name = settings.model_for(archetype.agent_id)
            self.models.setdefault(name, ModelHealth(name)).agents.append(archetype.agent_id)
        self._running: dict[str, _Running] = {}
        self._started = time.monotonic()
        self._process = psutil.Process()

    def model(self, name: str) -> ModelHealth:
        """The model's record (one not configured, a per-request model, gets one too)."""
        health = self.models.get(name)
        if health is None:
            health = self.models[name] = ModelHealth(name)
        return health

    # --- fed by the metrics --------------------------------------------------------------

    def round_started(self, payload: RoundStarted) -> None:
        self._running[payload.session_id] = _Running(
            payload.session_id,
            payload.round_id,
            payload.index,
            payload.run_index,
            payload.rounds,
            payload.timestamp,
        )

    def round_complete(self, payload: RoundComplete) -> None:
        running = self._running.get(payload.session_id)
        if running is not None and running.round_id == payload.round_id:
            del self._running[payload.session_id]

    def agent_started(self, payload: AgentStarted) -> None:
        running = self._running.get(payload.session_id)
        if running is not None:
            running.speaking = payload.agent_id

    def agent_complete(self, payload: AgentComplete) -> None:
        meta = payload.metadata
        self.model(meta.model).turn(meta.status, meta.error_class, meta.first_token_ms)
        running = self._running.get(payload.session_id)
        if running is not None and running.speaking == payload.agent_id:
            running.speaking = None

    def retried(self, model: str) -> None:
        self.model(model).retries += 1

    def rate_limited(self, model: str, seconds: float) -> None:
        health = self.model(model)
        health.rate_limit_waits += 1
        health.rate_limit_wait_s += seconds

    # --- read ----------------------------------------------------------------------------

    @property
    def uptime(self) -> float:
        return time.monotonic() - self._started

    def memory_rss(self) -> int:
        """The process's resident memory, in bytes."""
        return int(self._process.memory_info().rss)

    def snapshot(self, sources: StatusSources) -> SystemStatus:
        rounds = tuple(
            RunningRound(
                session_id=r.session_id,
                title=sources.title(r.session_id),
                round_id=r.round_id,
                index=r.index,
                run_index=r.run_index,
                rounds=r.rounds,
                started=r.started,
                speaking=r.speaking,
                viewers=sources.viewers(r.session_id),
            )
            for r in sorted(self._running.values(), key=lambda r: r.started)
        )
        return SystemStatus(
            version=sources.version,
            uptime_s=round(self.uptime, 1),
            llm_ready=sources.llm_ready(),
            memory_rss_bytes=self.memory_rss(),
            database_bytes=sources.database_bytes(),
            rounds_running=len(rounds),
            viewers=sources.all_viewers(),
            rounds=rounds,
            models=tuple(m.view() for m in self.models.values()),
        )


@dataclass(frozen=True, slots=True)
class StatusSources:
    """What a snapshot reads from the engine at the time it is taken."""

    version: str
    title: Callable[[str], str]
    viewers: Callable[[str], int]
    all_viewers: Callable[[], int]
    llm_ready: Callable[[], bool]
    database_bytes: Callable[[], int | None]
