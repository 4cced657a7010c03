"""Record every outgoing connection and name lookup the process makes; refuse non-loopback ones.

LiteLLM makes calls of its own (model information, tokenizers, cost maps) besides the
completion. With this in place a test can say that nothing at all went anywhere but the fake
provider, and a stray call fails at once instead of hanging on a network that is not there.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Connections:
    connects: list[tuple[str, int]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, address: Any) -> None:
        if isinstance(address, tuple) and len(address) >= 2:
            with self._lock:
                self.connects.append((str(address[0]), int(address[1])))

    def elsewhere(self, *allowed: tuple[str, int]) -> list[tuple[str, int]]:
        """The connections that went anywhere but ``allowed``."""
        with self._lock:
            return [c for c in self.connects if c not in allowed]


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def guard_network(monkeypatch: pytest.MonkeyPatch) -> Connections:
    """Until ``monkeypatch`` undoes it: record connections, refuse non-loopback ones."""
    seen = Connections()
    connect = socket.socket.connect
    connect_ex = socket.socket.connect_ex
    getaddrinfo = socket.getaddrinfo

    def guard(address: Any) -> None:
        seen.add(address)
        if isinstance(address, tuple) and not _loopback(str(address[0])):
            raise ConnectionRefusedError(f"test network guard: no connection to {address}")

    def guarded_connect(self: socket.socket, address: Any) -> None:
        guard(address)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        guard(address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        with seen._lock:
            seen.lookups.append(name)
        if host is not None and not _loopback(name):
            raise socket.gaierror(socket.EAI_NONAME, f"test network guard: no lookup of {name}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return seen
