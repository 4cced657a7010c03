"""Several real workers on one Redis and one database: the launcher of the multi-worker tests
and of the bench.

``with workers(tmp_path, 3, offline_tps="40") as cluster:`` starts a ``redis-server`` (or
uses the one given) and three ``psyche-sse serve`` processes on ports of their own, sharing
it and a database in ``tmp_path``; ``cluster[i]`` is worker ``i`` (a
:class:`~tests.live.ServerProcess`: ``.url``, ``.client()``, ``.pid``), ``cluster.redis``
the Redis (``.kill()``, ``.start()``). Settings are ``PSYCHE_*`` keywords, as for
:func:`tests.live.start_server`; ``roles``: one ``PSYCHE_ROLE`` per worker.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.live import ServerProcess, start_server, stop_server
from tests.redis_server import RedisServer, redis_server
from tests.waiting import wait_for


@dataclass
class Workers:
    redis: RedisServer
    servers: list[ServerProcess]

    def __getitem__(self, index: int) -> ServerProcess:
        return self.servers[index]

    def __len__(self) -> int:
        return len(self.servers)


@contextmanager
def workers(
    directory: Path,
    count: int,
    *,
    redis: RedisServer | None = None,
    roles: Sequence[str] | None = None,
    **settings: str,
) -> Iterator[Workers]:
    with ExitStack() as stack:
        if redis is None:
            (directory / "redis").mkdir(exist_ok=True)
            redis = stack.enter_context(redis_server(directory / "redis"))
        servers: list[ServerProcess] = []
        stack.callback(lambda: [stop_server(s) for s in servers])
        # Heartbeats keep a stream that waits for a slow start (LiteLLM's import on a loaded
        # machine) within the clients' read timeout.
        settings.setdefault("heartbeat", "2")
        for i in range(count):
            extra = {"PSYCHE_REDIS_URL": redis.url}
            if roles is not None:
                extra["PSYCHE_ROLE"] = roles[i]
            # One after another: the first creates the database, the others find it made.
            servers.append(start_server(directory, extra, **settings))
        for server in servers:
            # Ready as a load balancer's health check sees it: LiteLLM imported and warm (its
            # import, in a thread, slows the whole process for a while on a loaded machine).
            with server.client() as client:
                wait_for(lambda c=client: c.get("/healthz").json()["llm"] == "ready", 120)
        yield Workers(redis, servers)
