"""Signing in and out: the login page, the cookie, and slowing down password guessing.

Failed sign-ins are counted per address and per user name: after a few in a window, each
further attempt from that address or for that name is refused (429 with ``Retry-After``)
for a delay that doubles with each failure. A success clears its own address's count only.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..accounts import MAX_NAME_CHARS, MAX_PASSWORD_CHARS, Passwords
from ..store import accounts as sql
from .auth import user_of
from .context import Context
from .gate import COOKIE, Gate
from .inputs import read_fields

FREE_FAILURES = 5
"""Failed sign-ins allowed in a window before attempts are slowed down."""
WINDOW_SECONDS = 15 * 60.0
FIRST_DELAY_SECONDS = 30.0
"""The wait after the last free failure; it doubles with each failure after that."""
MAX_DELAY_SECONDS = 15 * 60.0
MAX_KEYS = 10_000
"""Addresses and names remembered at most (the oldest are forgotten first)."""
HASHING_AT_ONCE = 2
"""Passwords checked at once: each Argon2 check takes tens of MB and milliseconds of CPU."""

WRONG = "Wrong name or password."

Key = tuple[str, str]


class LoginThrottle:
    """Counts failed sign-ins by key (``("address", ip)``, ``("user", name)``)."""

    def __init__(
        self,
        *,
        free: int = FREE_FAILURES,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[Key, list[float]] = OrderedDict()

    def _recent(self, key: Key, now: float) -> list[float]:
        times = self._failures.get(key)
        if times is None:
            return []
        fresh = [t for t in times if now - t < self.window]
        if fresh:
            self._failures[key] = fresh
        else:
            del self._failures[key]
        return fresh

    def retry_after(self, keys: Sequence[Key]) -> float:
        """Seconds before any of ``keys`` may try again; 0 when they may now."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.free:
                over = len(times) - self.free
                delay = min(FIRST_DELAY_SECONDS * 2.0**over, MAX_DELAY_SECONDS)
                wait = max(wait, times[-1] + delay - now)
        return wait

    def failed(self, keys: Sequence[Key]) -> None:
        now = self.clock()
        for key in keys:
            times = self._recent(key, now)
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, key: Key) -> None:
        self._failures.pop(key, None)


def safe_next(value: object) -> str:
    """Where to go after signing in: a path on this site, nothing else."""
    if (
        isinstance(value, str)
        and value.startswith("/")
        and not value.startswith(("//", "/\\"))
        and len(value) <= 2000
        and value.isprintable()
        and value not in ("/login", "/logout")
    ):
        return value
    return "/"


class LoginPages:
    def __init__(self, ctx: Context, gate: Gate, passwords: Passwords | None = None) -> None:
        self.ctx = ctx
        self.gate = gate
        self.passwords = passwords or Passwords()
        self.throttle = LoginThrottle()
        self._hashing = anyio.CapacityLimiter(HASHING_AT_ONCE)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
        ]

    def _form(
        self, next_url: str, *, name: str = "", error: str = "", status_code: int = 200
    ) -> HTMLResponse:
        html = self.ctx.renderer.env.get_template("login.html").render(
            next=next_url,
            name=name,
            error=error,
            max_name=MAX_NAME_CHARS,
            max_password=MAX_PASSWORD_CHARS,
        )
        return HTMLResponse(html, status_code=status_code)

    async def login_page(self, request: Request) -> Response:
        next_url = safe_next(request.query_params.get("next"))
        if self.gate.mode != "accounts" or user_of(request).id is not None:
            return RedirectResponse(next_url, status_code=303)
        return self._form(next_url)

    async def login(self, request: Request) -> Response:
        if self.gate.mode != "accounts":
            return RedirectResponse("/", status_code=303)
        fields = await read_fields(request)
        next_url = safe_next(fields.get("next"))
        name, password = fields.get("name"), fields.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
            return self._form(next_url, error="Enter your name and password.", status_code=400)
        name = name.strip()
        if len(name) > MAX_NAME_CHARS or len(password) > MAX_PASSWORD_CHARS:
            return self._form(next_url, error=WRONG, status_code=401)
        address = request.client.host if request.client else ""
        keys = [("address", address), ("user", name.lower())]
        wait = self.throttle.retry_after(keys)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            page = self._form(
                next_url,
                name=name,
                error=f"Too many failed sign-ins: try again in {seconds} seconds.",
                status_code=429,
            )
            page.headers["Retry-After"] = str(seconds)
            return page
        store = self.ctx.engine.store
        found = await store.run(partial(sql.user_by_name, name=name))
        stored = found[1] if found is not None else None
        ok = await anyio.to_thread.run_sync(
            self.passwords.verify, stored, password, limiter=self._hashing
        )
        if not ok or found is None:
            self.throttle.failed(keys)
            return self._form(next_url, name=name, error=WRONG, status_code=401)
        self.throttle.succeeded(keys[0])
        user = found[0]
        if stored is not None and self.passwords.needs_rehash(stored):
            hashed = await anyio.to_thread.run_sync(
                self.passwords.hash, password, limiter=self._hashing
            )
            await store.write(
                partial(sql.set_password, user_id=user.id, password_hash=hashed, sign_out=False)
            )
        # A user created a moment ago by the CLI: make sure this server knows it.
        await self.gate.refresh()
        response = RedirectResponse(next_url, status_code=303)
        response.set_cookie(
            COOKIE,
            self.gate.cookie_for(user),
            max_age=self.gate.max_age,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.ctx.settings.cookie_secure,
        )
        return response

    async def logout(self, request: Request) -> Response:
        """Sign out: this browser, or with ``everywhere`` every browser and every stream
        signed in as this user."""
        user = user_of(request)
        if user.id is None:
            return RedirectResponse("/", status_code=303)
        fields = await read_fields(request, allow_empty=True)
        if fields.get("everywhere"):
            await self.ctx.engine.store.write(partial(sql.sign_out_everywhere, user_id=user.id))
            await self.gate.refresh()
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            COOKIE,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.ctx.settings.cookie_secure,
        )
        return response
