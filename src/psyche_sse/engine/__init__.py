"""The engine: the one object the CLI and the web service drive. Use ``async with``.

It owns the bus, the LLM client, the store and its recorder, and composes the three jobs:
:attr:`Engine.live` (the sessions in memory, :mod:`.live`), :attr:`Engine.rounds` (running
and stopping rounds, :mod:`.rounds`) and :attr:`Engine.archive` (stored sessions: list,
read, rename, delete, :mod:`.archive`). Every event goes out through :attr:`Engine.publish`
(:mod:`.publisher`), which numbers it on the bus and has the recorder save it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from functools import partial
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from .. import __version__
from ..bus import EventBus, MemoryBus
from ..config import Settings
from ..events import SystemStatus
from ..health import Health, StatusSources
from ..llm import LLMClient
from ..llm import ready as llm_ready
from ..logs import LogIds
from ..metrics import ServiceMetrics
from ..redisbus import RedisBus
from ..store import Recorder, Store
from ..store.recorder import SAVE_INTERVAL
from .archive import MAX_TITLE_CHARS, Archive, clean_title
from .cluster import Cluster
from .live import LiveSessions, Session
from .publisher import Publisher
from .rounds import Rounds
from .takeover import end_orphaned

__all__ = ("MAX_TITLE_CHARS", "Engine", "Session", "clean_title")


def new_bus(settings: Settings) -> EventBus:
    """The bus ``settings`` ask for: on Redis when ``redis_url`` is set, else in memory."""
    if settings.redis_url is not None:
        return RedisBus.from_url(settings.redis_url.get_secret_value(), settings.history_events)
    return MemoryBus(settings.history_events)


class _Parts:
    """What exists while the engine runs."""

    def __init__(
        self,
        settings: Settings,
        llm: LLMClient,
        bus: EventBus,
        store: Store,
        recorder: Recorder,
        tg: TaskGroup,
        metrics: ServiceMetrics,
        log_ids: LogIds,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.cluster = Cluster(bus, settings) if isinstance(bus, RedisBus) else None
        self.live = LiveSessions(
            settings, llm, bus, store, recorder, shared=self.cluster is not None
        )
        self.publish = Publisher(bus, recorder, self.live, metrics)
        self.rounds = Rounds(settings, self.live, self.publish, tg, log_ids, self.cluster)
        self.archive = Archive(self.live, self.rounds, store, recorder)

    def start(self, tg: TaskGroup) -> None:
        """Start what runs as long as the engine: the sweep of idle sessions and, among
        several workers, the leases, the control messages and the watch for dead workers."""
        tg.start_soon(self.live.sweep)
        cluster = self.cluster
        if cluster is not None:
            tg.start_soon(cluster.keep_leases, self.rounds.lost)
            tg.start_soon(cluster.listen, self.rounds.control)
            tg.start_soon(cluster.watch_orphans, partial(end_orphaned, self.publish))
            if self.rounds.settings.role != "deliver":
                tg.start_soon(cluster.take_runs, self.rounds.take)


class Engine:
    """Owns the sessions, the bus, the LLM client and the store.

    The store is opened on entry from ``settings.database()``
    (:class:`~psyche_sse.errors.StoreError` when it cannot be used), unless one is passed
    in, which the caller then owns. ``save_interval``: seconds between saves of a streaming
    turn's partial text. ``log_ids``: where the rounds and turns bind their ids for the log
    lines (the entry point's log handlers read them).

    :attr:`metrics` (Prometheus) and :attr:`health` (the status page's) count what it does.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        bus: EventBus | None = None,
        llm: LLMClient | None = None,
        store: Store | None = None,
        save_interval: float = SAVE_INTERVAL,
        log_ids: LogIds | None = None,
    ) -> None:
        self.settings = settings
        self._owns_bus = bus is None
        self.bus: EventBus = bus or new_bus(settings)
        self.llm = llm or LLMClient(settings)
        self.save_interval = save_interval
        self.log_ids = log_ids or LogIds()
        self.health = Health(settings)
        self.metrics = ServiceMetrics(
            self.health,
            rounds_running=lambda: self._parts.live.running if self._parts else 0,
            database_bytes=self.database_bytes,
            llm_ready=llm_ready,
        )
        self.llm.observer = self.metrics
        self._store = store
        self._parts: _Parts | None = None
        self._exit: AsyncExitStack | None = None

    async def __aenter__(self) -> Engine:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self.llm.close)
            if self._owns_bus and isinstance(self.bus, RedisBus):
                await stack.enter_async_context(self.bus)
            store = self._store
            if store is None:
                store = await Store.aopen(self.settings.database())
                stack.push_async_callback(store.aclose)
            recorder = Recorder(store, save_interval=self.save_interval)
            await stack.enter_async_context(recorder)
            tg = await stack.enter_async_context(anyio.create_task_group())
            parts = _Parts(
                self.settings, self.llm, self.bus, store, recorder, tg, self.metrics, self.log_ids
            )
            parts.start(tg)
            self._parts = parts
            self._exit = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._parts is not None and self._exit is not None
        # Rounds stop first (their last turns complete and are recorded), then the recorder
        # saves what is left, then the store closes.
        self._parts.rounds.cancel_all()
        try:
            return await self._exit.__aexit__(exc_type, exc, tb)
        finally:
            self._parts = None
            self._exit = None

    def database_bytes(self) -> int | None:
        """The database's size (see :meth:`Store.size`); None in memory or when closed."""
        store = self._parts.store if self._parts else self._store
        return store.size() if store is not None else None

    def status(self) -> SystemStatus:
        """What the engine is doing now: the status page's ``system_status``."""
        live = self._parts.live if self._parts else None

        def title(session_id: str) -> str:
            session = live.get(session_id) if live else None
            return session.title if session else ""

        return self.health.snapshot(
            StatusSources(
                version=__version__,
                title=title,
                viewers=self.bus.followers,
                all_viewers=lambda: self.metrics.viewers_open("json", "html"),
                llm_ready=llm_ready,
                database_bytes=self.database_bytes,
            )
        )

    @property
    def _running(self) -> _Parts:
        if self._parts is None:
            raise RuntimeError("the engine is not running")
        return self._parts

    @property
    def live(self) -> LiveSessions:
        return self._running.live

    @property
    def rounds(self) -> Rounds:
        return self._running.rounds

    @property
    def archive(self) -> Archive:
        return self._running.archive

    @property
    def publish(self) -> Publisher:
        return self._running.publish

    @property
    def store(self) -> Store:
        return self._running.store

    @property
    def recorder(self) -> Recorder:
        return self._running.recorder
