"""Settings: the one place that reads the environment and the optional TOML file.

Precedence, highest first: ``PSYCHE_*`` environment variables, the TOML file named by
``PSYCHE_CONFIG`` (default ``./psyche.toml`` when it exists), then the defaults below.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .errors import ConfigError

StreamingMode = Literal["auto", "native", "simulated"]
LogFormat = Literal["text", "json"]
Role = Literal["both", "generate", "deliver"]

OFFLINE_MODEL = "psyche/offline"
# Tokens a second the offline model streams at; read here and by a request that sets none.
DEFAULT_OFFLINE_TPS = 30.0
DEFAULT_OFFLINE_TICK = 0.1
DEFAULT_HISTORY_EVENTS = 20_000
"""Events of a session the in-memory bus keeps for replay."""
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# Addresses that bind every interface: they name no host a client would use.
_WILDCARD_ADDRESSES = ("", "0.0.0.0", "::", "[::]", "*")


def agent_env_suffix(agent_id: str) -> str:
    """``Anima/Animus`` -> ``ANIMA_ANIMUS``: the suffix of ``PSYCHE_MODEL_<AGENT>``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", agent_id).strip("_").upper()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PSYCHE_",
        frozen=True,
        extra="ignore",
        protected_namespaces=(),
    )

    # Models
    model: str = OFFLINE_MODEL
    models: dict[str, str] = Field(default_factory=dict)
    api_base: str | None = None
    max_tokens: int = Field(default=400, ge=16, le=8192)

    # Streaming
    streaming: StreamingMode = "auto"
    simulated_chunks: int = Field(default=10, ge=1, le=1000)
    simulated_delay: float = Field(default=0.1, ge=0.0, le=10.0)

    # Retries, rate limit, timeouts (seconds)
    retry_attempts: int = Field(default=3, ge=1, le=20)
    retry_base: float = Field(default=1.0, ge=0.0, le=60.0)
    retry_cap: float = Field(default=60.0, ge=0.0, le=600.0)
    rate_limit_rpm: float = Field(default=0.0, ge=0.0)
    timeout_total: float = Field(default=180.0, gt=0)
    timeout_first_token: float = Field(default=60.0, gt=0)
    timeout_idle: float = Field(default=30.0, gt=0)

    # Embedded offline model
    offline_tps: float = Field(default=DEFAULT_OFFLINE_TPS, ge=0.0, le=100000.0)
    # Seconds between two chunks of a paced reply, each with the words due (0: one a word).
    offline_tick: float = Field(default=DEFAULT_OFFLINE_TICK, ge=0.0, le=10.0)

    # Council
    rounds: int = Field(default=1, ge=1, le=20)
    memory_rounds: int = Field(default=5, ge=0, le=100)
    max_situation_chars: int = Field(default=4000, ge=1, le=100_000)
    # US dollars a session may spend on its models (LiteLLM's price map); 0: no budget.
    budget_usd: float = Field(default=0.0, ge=0.0, le=1_000_000.0)

    # Service
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # SQLite file of every conversation, created with its directory; ":memory:" keeps
    # nothing after the process ends.
    db: Path = Path("var/psyche.db")
    # A PostgreSQL server instead (postgresql://user:password@host:5432/name), for several
    # machines; ``db`` is then unused. A secret: its password is never shown.
    database_url: SecretStr | None = None
    heartbeat: float = Field(default=15.0, gt=0)
    history_events: int = Field(default=DEFAULT_HISTORY_EVENTS, ge=100)
    # Rounds running at once on this server; more are refused (429) until one ends.
    max_running_rounds: int = Field(default=64, ge=1, le=100_000)
    # Seconds a session with nothing running and no viewer stays in memory; then it lives
    # only in the store, and comes back from there when asked for.
    session_idle: float = Field(default=10.0, gt=0)
    max_deltas_per_second: float = Field(default=30.0, gt=0)
    # One log line per HTTP request (uvicorn's access log); off by default, as in gunicorn.
    access_log: bool = False
    # Host names (the Host header, port ignored) the service answers for; any other gets a
    # 400, which is what defeats DNS rebinding. Comma-separated in the environment. Empty:
    # the loopback names plus ``host`` when that is one address. ``*`` allows any host.
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    # Addresses and networks (CIDR) of the reverse proxies in front of the server: a request
    # whose direct peer is one of them is taken to come from the client its X-Forwarded-For
    # names, by the scheme its X-Forwarded-Proto names. Comma-separated in the environment.
    # Empty: no proxy is trusted, and those headers are ignored.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    # Slow and idle clients. Open connections at most (each SSE viewer holds one; beyond
    # it, requests get a 503); seconds an idle keep-alive connection is kept; seconds a
    # client has to send a request's headers before its connection is closed.
    max_connections: int = Field(default=4096, ge=1)
    keep_alive_timeout: int = Field(default=5, ge=1, le=3600)
    header_timeout: float = Field(default=10.0, gt=0, le=3600)

    # Operations. Log lines as "text", or "json": one object a line, with the session,
    # round and turn ids of the line. Seconds between the status page's updates.
    log_format: LogFormat = "text"
    status_interval: float = Field(default=2.0, ge=0.1, le=60)
    # Accounts (see README, "Accounts"). The key signing login cookies: when unset, one is
    # made once and kept in the database. Secure cookies for a server behind TLS; how long a
    # login lasts; serving a non-loopback address with no user created (refused unless set).
    secret_key: SecretStr | None = None
    cookie_secure: bool = False
    login_days: float = Field(default=14.0, gt=0, le=366)
    insecure_no_auth: bool = False
    # Per signed-in user: runs started in any minute, and rounds running at once (0: no
    # limit). The local user of a server with no accounts has only ``max_running_rounds``.
    user_rounds_per_minute: int = Field(default=10, ge=0, le=100_000)
    user_running_rounds: int = Field(default=2, ge=0, le=100_000)
    # Several workers (see README, "Several workers"): the Redis they share (its events,
    # leases and control; unset: one process and the in-memory bus), and what this worker
    # does: run rounds and serve viewers (both), only run rounds, or only serve.
    redis_url: SecretStr | None = None
    role: Role = "both"
    # Seconds a worker's lease on a running round lasts unless renewed: a worker that dies
    # is noticed that long after.
    lease_seconds: float = Field(default=5.0, ge=1.0, le=60.0)

    # Per-agent overrides from the environment (PSYCHE_MODEL_SHADOW, ...).
    model_shadow: str | None = None
    model_persona: str | None = None
    model_anima_animus: str | None = None
    model_self: str | None = None
    model_ego: str | None = None

    @field_validator("models")
    @classmethod
    def _nonempty_models(cls, value: dict[str, str]) -> dict[str, str]:
        for agent, name in value.items():
            if not name.strip():
                raise ValueError(f"empty model name for {agent}")
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        # Never quote the value back: it holds a password.
        if value is not None and not value.get_secret_value().lower().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError(
                "must be a postgresql:// URL, such as postgresql://user:password@host:5432/psyche"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("allowed_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # uvicorn would take what is not an address as a literal name that never matches:
        # a typo would silently trust nothing.
        out: list[str] = []
        for entry in value:
            try:
                if "/" in entry:
                    out.append(str(ipaddress.ip_network(entry, strict=False)))
                else:
                    out.append(str(ipaddress.ip_address(entry.removeprefix("[").rstrip("]"))))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (such as 127.0.0.1 or 10.0.0.0/8)"
                ) from None
        return tuple(out)

    def allowed_host_names(self) -> tuple[str, ...]:
        """The host names requests may name: ``allowed_hosts``, or its default."""
        if self.allowed_hosts:
            return self.allowed_hosts
        host = self.host.strip()
        if host in _WILDCARD_ADDRESSES:
            return LOOPBACK_HOSTS
        name = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return LOOPBACK_HOSTS if name in LOOPBACK_HOSTS else (*LOOPBACK_HOSTS, name)

    def loopback(self) -> bool:
        """Whether ``host`` is a loopback address: only this machine can connect."""
        host = self.host.strip().removeprefix("[").removesuffix("]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def database(self) -> str:
        """What the store opens: the ``database_url`` when set, else the SQLite file ``db``."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return str(self.db)

    def model_for(self, agent_id: str) -> str:
        override = getattr(self, f"model_{agent_env_suffix(agent_id).lower()}", None)
        if override:
            return str(override)
        return self.models.get(agent_id) or self.model

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments win, then the environment, then the TOML file (passed in as
        # ``_toml`` defaults by ``load``).
        return (init_settings, env_settings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, the TOML file and explicit overrides."""
    explicit = os.environ.get("PSYCHE_CONFIG")
    path = Path(explicit) if explicit else Path("psyche.toml")
    file_values: dict[str, Any] = {}
    if explicit or path.exists():
        file_values = _read_toml(path)
        unknown = sorted(set(file_values) - set(Settings.model_fields))
        if unknown:
            noun = "setting" if len(unknown) == 1 else "settings"
            raise ConfigError(f"unknown {noun} in {path}: {', '.join(unknown)}")
    from_env = {k[len("PSYCHE_") :].lower() for k in os.environ if k.startswith("PSYCHE_")}
    values = {k: v for k, v in file_values.items() if k not in from_env}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from exc
