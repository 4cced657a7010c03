"""Debian's nginx on loopback in front of a live server, configured as ``docs/deploy.md`` says.

The configuration is read from the document itself (its TLS ``server`` block), so what the
tests prove is what the document recommends. Only what cannot be the same on a test machine
changes: the address nginx listens on (127.0.0.1, a free port), the certificate (a
throwaway one from a test authority, :mod:`trustme`) and the server's address. The nginx
binary is installed by ``make test`` (``make system-packages``) when missing.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trustme

from tests.live import ROOT, STOP_TIMEOUT
from tests.waiting import wait_for

NGINX = Path("/usr/sbin/nginx")
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
START_TIMEOUT = 20.0
_DOC_UPSTREAM = "proxy_pass http://127.0.0.1:8000;"


def documented_config() -> str:
    """The nginx configuration of ``docs/deploy.md`` (its ``nginx`` block with the proxy)."""
    blocks = re.findall(r"```nginx\n(.*?)```", DEPLOY_DOC.read_text(), re.S)
    found = [b for b in blocks if "proxy_pass" in b]
    assert len(found) == 1, "docs/deploy.md has one nginx block with proxy_pass"
    return found[0]


def server_blocks(config: str) -> list[str]:
    """The top-level ``server { ... }`` blocks of an nginx configuration."""
    out: list[str] = []
    for match in re.finditer(r"^server\s*\{", config, re.M):
        depth = 0
        for end in range(match.start(), len(config)):
            if config[end] == "{":
                depth += 1
            elif config[end] == "}":
                depth -= 1
                if depth == 0:
                    out.append(config[match.start() : end + 1])
                    break
    return out


def documented_tls_server() -> str:
    """The ``server`` block that terminates TLS and passes requests on to psyche-sse."""
    found = [b for b in server_blocks(documented_config()) if "ssl_certificate" in b]
    assert len(found) == 1, "docs/deploy.md has one server block with a certificate"
    return found[0]


def _replace(pattern: str, new: str, text: str, count: int = 0) -> str:
    out, n = re.subn(pattern, new, text, count=count, flags=re.M)
    assert n, f"no {pattern!r} in the documented nginx configuration"
    return out


def adapt(
    block: str,
    *,
    port: int,
    upstream: str,
    tls: tuple[Path, Path] | None,
    replacing: Mapping[str, str] | None = None,
) -> str:
    """``block`` (:func:`documented_tls_server`) for this machine: listening on
    ``127.0.0.1:port`` (IPv6 listeners dropped), passing to ``upstream``, with the
    certificate and key ``tls`` (or plain HTTP when None); and each documented directive
    that ``replacing`` names replaced by its value (for a test's variant)."""
    block = _replace(r"^\s*listen\s+\[::\].*\n", "", block)
    if tls is None:
        block = _replace(r"^\s*ssl_\w+\s.*\n", "", block)
        block = _replace(r"^(\s*)listen\s+443\b.*;", rf"\1listen 127.0.0.1:{port};", block)
    else:
        cert, key = tls
        block = _replace(r"^(\s*)listen\s+443\b", rf"\1listen 127.0.0.1:{port}", block)
        block = _replace(r"^(\s*ssl_certificate)\s+\S+;", rf"\1 {cert};", block)
        block = _replace(r"^(\s*ssl_certificate_key)\s+\S+;", rf"\1 {key};", block)
    assert block.count(_DOC_UPSTREAM) == 1, f"docs/deploy.md passes to {_DOC_UPSTREAM}"
    block = block.replace(_DOC_UPSTREAM, f"proxy_pass {upstream};")
    for directive, variant in (replacing or {}).items():
        assert block.count(directive) == 1, f"docs/deploy.md has {directive!r} once"
        block = block.replace(directive, variant)
    return block


def main_config(where: Path, server: str) -> str:
    """A whole nginx configuration around ``server``: everything it writes in ``where``."""
    temp = "\n".join(
        f"    {kind}_temp_path {where / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root nginx would run its workers as nobody, who cannot enter the test's directory.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""{user}
worker_processes 1;
pid {where / "nginx.pid"};
error_log {where / "error.log"} notice;
events {{
    worker_connections 256;
}}
http {{
    access_log {where / "access.log"};
{temp}
{server}
}}
"""


@dataclass
class Nginx:
    """nginx running in ``where``, listening on 127.0.0.1:``port``."""

    url: str
    port: int
    where: Path
    process: subprocess.Popen[bytes]
    ca: trustme.CA | None

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client of nginx that trusts its test certificate."""
        verify: ssl.SSLContext | bool = True
        if self.ca is not None:
            verify = ssl.create_default_context()
            self.ca.configure_trust(verify)
        return httpx.Client(base_url=self.url, verify=verify, timeout=httpx.Timeout(15.0), **kwargs)

    @property
    def errors(self) -> str:
        log = self.where / "error.log"
        return log.read_text() if log.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _certificate(where: Path) -> tuple[trustme.CA, tuple[Path, Path]]:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = where / "cert.pem", where / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    for pem in issued.cert_chain_pems[1:]:
        pem.write_to_path(str(cert), append=True)
    issued.private_key_pem.write_to_path(str(key))
    return ca, (cert, key)


def start_nginx(
    where: Path,
    upstream: str,
    *,
    tls: bool = True,
    replacing: Mapping[str, str] | None = None,
    beside: str = "",
) -> Nginx:
    """nginx with the documented configuration in front of ``upstream`` (a server's URL),
    terminating TLS with a throwaway certificate when ``tls``, with the directives of
    ``replacing`` replaced (see :func:`adapt`), and ``beside`` (such as an ``upstream``
    block the server block passes to) in the ``http`` block beside it. Returns once it
    accepts connections."""
    assert NGINX.exists(), "nginx is missing: `make system-packages` installs it"
    where.mkdir(parents=True, exist_ok=True)
    ca, paths = _certificate(where) if tls else (None, None)
    last = ""
    for _ in range(3):  # the free port may be taken before nginx binds it
        port = free_port()
        block = adapt(
            documented_tls_server(), port=port, upstream=upstream, tls=paths, replacing=replacing
        )
        conf = where / "nginx.conf"
        conf.write_text(main_config(where, f"{beside}\n{block}" if beside else block))
        (where / "error.log").write_text("")
        process = subprocess.Popen(
            [NGINX, "-p", where, "-c", conf, "-e", where / "error.log", "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: process.poll() is not None or _listening(port), START_TIMEOUT)  # noqa: B023
        scheme = "https" if tls else "http"
        if process.poll() is None:
            return Nginx(f"{scheme}://127.0.0.1:{port}", port, where, process, ca)
        last = (where / "error.log").read_text()
        if "Address already in use" not in last:
            break
    raise RuntimeError(f"nginx did not start:\n{last}")


def stop_nginx(nginx: Nginx) -> None:
    """SIGTERM: nginx's fast shutdown, which does not wait for open event streams."""
    if nginx.process.poll() is None:
        nginx.process.send_signal(signal.SIGTERM)
    try:
        nginx.process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        nginx.process.kill()
        nginx.process.wait()


@contextmanager
def nginx_in_front(where: Path, upstream: str, **kwargs: Any) -> Iterator[Nginx]:
    """:func:`start_nginx` for a ``with`` block, stopped at its end."""
    nginx = start_nginx(where, upstream, **kwargs)
    try:
        yield nginx
    finally:
        stop_nginx(nginx)
