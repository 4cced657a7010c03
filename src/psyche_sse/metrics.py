"""Prometheus metrics, on a registry of the engine's own (``GET /metrics`` serves it).

Most of them are counted from the events the engine publishes (:meth:`ServiceMetrics.observe`,
called by the publisher for every event); the rest come from where no event tells them: the
LLM client's retries and rate-limit waits (:meth:`ServiceMetrics.retried`,
:meth:`ServiceMetrics.rate_limited`) and the event streams (:meth:`ServiceMetrics.viewer`,
:meth:`ServiceMetrics.merged`). What is read rather than counted (rounds running, the database's
size, whether LiteLLM is loaded) is read when Prometheus scrapes.

A delta costs one counter increment, on a labelled child found once: nothing else here
runs per delta.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from .events import AgentComplete, AgentStarted, Event, EventType, RoundComplete, RoundStarted
from .health import Health
from .transcript import Status

__all__ = ("CONTENT_TYPE_LATEST", "ServiceMetrics")

PREFIX = "psyche"
# Seconds: a turn of the offline model at full speed takes milliseconds, one of a slow
# provider a minute or more (the total timeout is 180 s by default).
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0)
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    """The engine's metrics and the :class:`Health` they feed.

    ``rounds_running``, ``database_bytes`` and ``llm_ready`` are called at scrape time.
    """

    def __init__(
        self,
        health: Health,
        *,
        rounds_running: Callable[[], int],
        database_bytes: Callable[[], int | None],
        llm_ready: Callable[[], bool],
    ) -> None:
        self.health = health
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, start time, CPU, fds
        self.rounds = Counter(
            f"{PREFIX}_rounds", "Rounds that ended, by status", ["status"], registry=r
        )
        self.turns = Counter(
            f"{PREFIX}_turns",
            "Turns that ended, by status, model and streaming mode",
            ["status", "model", "streaming"],
            registry=r,
        )
        self.provider_errors = Counter(
            f"{PREFIX}_provider_errors",
            "Turns that failed, by model and error class",
            ["model", "error_class"],
            registry=r,
        )
        self.retries = Counter(
            f"{PREFIX}_llm_retries",
            "Provider calls retried before the first token, by model and error class",
            ["model", "error_class"],
            registry=r,
        )
        self.rate_limit_waits = Counter(
            f"{PREFIX}_rate_limit_waits",
            "Provider calls that waited for the rate limit, by model",
            ["model"],
            registry=r,
        )
        self.rate_limit_wait_seconds = Counter(
            f"{PREFIX}_rate_limit_wait_seconds",
            "Seconds provider calls waited for the rate limit, by model",
            ["model"],
            registry=r,
        )
        self.cost = Counter(
            f"{PREFIX}_cost_usd",
            "What the turns cost in US dollars, from LiteLLM's price map, by model "
            "(turns with an unknown price are not counted)",
            ["model"],
            registry=r,
        )
        self.turn_duration = Histogram(
            f"{PREFIX}_turn_duration_seconds",
            "How long turns took, start to end, by model",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            f"{PREFIX}_turn_first_token_seconds",
            "Time from a turn's start to its first token, by model",
            ["model"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=r,
        )
        published = Counter(
            f"{PREFIX}_events_published",
            "Events published on the bus, by type",
            ["type"],
            registry=r,
        )
        # Every type's child made once: a delta's count is a dict lookup and an increment.
        never = (EventType.SESSION_HISTORY, EventType.SYSTEM_STATUS)  # sent, not published
        self._published = {
            kind: published.labels(kind.value) for kind in EventType if kind not in never
        }
        self.viewers = Gauge(
            f"{PREFIX}_viewers",
            "Open event streams, by format (json: API clients, html: pages, status)",
            ["format"],
            registry=r,
        )
        self._viewers: dict[str, Gauge] = {}
        self._open: dict[str, int] = {}
        # Counted in two plain integers, read when the registry is collected: a message to
        # each viewer is the hot path of a crowded session, and a Counter takes a lock.
        self._deltas_in = 0
        self._messages_out = 0
        r.register(_Merging(self))
        ratio = Gauge(
            f"{PREFIX}_stream_delta_merge_ratio",
            "Deltas per message sent on the event streams since the start (1: no merging)",
            registry=r,
        )
        ratio.set_function(self.merge_ratio)
        running = Gauge(f"{PREFIX}_rounds_running", "Rounds running now", registry=r)
        running.set_function(rounds_running)
        size = Gauge(
            f"{PREFIX}_database_bytes",
            "Size of the SQLite database on disk, its write-ahead log included",
            registry=r,
        )
        size.set_function(lambda: float(database_bytes() or 0))
        ready = Gauge(f"{PREFIX}_llm_ready", "1 once LiteLLM is loaded and warmed up", registry=r)
        ready.set_function(lambda: 1.0 if llm_ready() else 0.0)

    # --- from the events -------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Count a published event (every one, each delta included)."""
        kind = event.type
        counted = self._published.get(kind)
        if counted is not None:
            counted.inc()
        if kind is EventType.AGENT_PROCESSING_UPDATE:
            return
        payload = event.payload
        if isinstance(payload, AgentComplete):
            self._turn(payload)
        elif isinstance(payload, AgentStarted):
            self.health.agent_started(payload)
        elif isinstance(payload, RoundStarted):
            self.health.round_started(payload)
        elif isinstance(payload, RoundComplete):
            self.rounds.labels(payload.status.value).inc()
            self.health.round_complete(payload)

    def _turn(self, payload: AgentComplete) -> None:
        meta = payload.metadata
        model = meta.model
        self.turns.labels(meta.status.value, model, meta.streaming or "none").inc()
        if meta.error_class and meta.status is Status.ERROR:
            self.provider_errors.labels(model, meta.error_class).inc()
        if meta.cost_usd is not None:
            self.cost.labels(model).inc(meta.cost_usd)
        self.turn_duration.labels(model).observe(meta.duration_ms / 1000)
        if meta.first_token_ms is not None:
            self.first_token.labels(model).observe(meta.first_token_ms / 1000)
        self.health.agent_complete(payload)

    # --- from the LLM client (it calls these as its observer) --------------------------------

    def retried(self, model: str, error_class: str) -> None:
        self.retries.labels(model, error_class).inc()
        self.health.retried(model)

    def rate_limited(self, model: str, seconds: float) -> None:
        self.rate_limit_waits.labels(model).inc()
        self.rate_limit_wait_seconds.labels(model).inc(seconds)
        self.health.rate_limited(model, seconds)

    # --- from the event streams ------------------------------------------------------------

    @contextmanager
    def viewer(self, fmt: str) -> Iterator[None]:
        """Count an open event stream of format ``fmt`` while the block runs."""
        gauge = self._viewers.get(fmt)
        if gauge is None:
            gauge = self._viewers[fmt] = self.viewers.labels(fmt)
        gauge.inc()
        self._open[fmt] = self._open.get(fmt, 0) + 1
        try:
            yield
        finally:
            gauge.dec()
            self._open[fmt] -= 1

    def viewers_open(self, *formats: str) -> int:
        """Open event streams of these formats (of every format when none is named)."""
        return sum(n for fmt, n in self._open.items() if not formats or fmt in formats)

    def merged(self, deltas: int, messages: int) -> None:
        """A client was sent ``deltas`` deltas as ``messages`` messages (once a batch)."""
        self._deltas_in += deltas
        self._messages_out += messages

    def merge_ratio(self) -> float:
        return self._deltas_in / self._messages_out if self._messages_out else 1.0

    # --- out -------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in Prometheus's text format (:data:`CONTENT_TYPE_LATEST`)."""
        return generate_latest(self.registry)


class _Merging(Collector):
    """The event streams' delta counts, as two Prometheus counters."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            f"{PREFIX}_stream_deltas",
            "Deltas sent to clients of the event streams, before merging",
            value=self._metrics._deltas_in,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_stream_delta_messages",
            "Messages those deltas were merged into (one per client and message at most)",
            value=self._metrics._messages_out,
        )
