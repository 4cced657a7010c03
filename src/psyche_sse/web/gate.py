"""The server's view of the accounts: who a cookie or a token names, and ending what a
revoked credential still holds open.

Requests are checked against a copy of the accounts kept in memory (users and live tokens),
so checking one costs no database read. One task (:meth:`Gate.watch`) reads the accounts'
``generation`` counter once a second; when another process (the CLI) has changed the
accounts, the copy is read again, and every request still running on a credential that no
longer holds (an open event stream, mostly) is cancelled: revocation takes a second at most,
and costs the streams nothing while nothing changes.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import count
from typing import Literal

import anyio
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..accounts import parse_token, token_matches
from ..config import Settings
from ..events import utc_now
from ..store import Store
from ..store import accounts as sql
from ..store.accounts import Snapshot, TokenRecord, UserRecord
from .auth import User

log = logging.getLogger(__name__)

COOKIE = "psyche_login"
POLL_SECONDS = 1.0
# A token this server does not know may be one made a moment ago: the accounts are read
# again for it, but not more often than this (unknown tokens are also what guessing sends).
MISS_REFRESH_SECONDS = 0.25
# Seconds between saves of when each token was last used.
TOKEN_USE_SAVE_SECONDS = 60.0
_SALT = "psyche-sse login"

Mode = Literal["local", "closed", "accounts"]


@dataclass(frozen=True, slots=True)
class Credential:
    """What a request was authenticated with: a login cookie (user and epoch), a token, or
    nothing (``user_id`` None: the local user of a server with no accounts, which holds
    only until the first user is created)."""

    user_id: int | None
    epoch: int | None = None  # a cookie's
    token_id: int | None = None


LOCAL = Credential(user_id=None)


def _user(record: UserRecord) -> User:
    return User(id=record.id, name=record.name, admin=record.admin)


class Gate:
    """The accounts as this server sees them. :meth:`start` with the store, then
    :meth:`watch` in a task for as long as the server runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # With no user, whether everyone may come in as the local user.
        self._open = settings.loopback() or settings.insecure_no_auth
        self._store: Store | None = None
        self._snapshot = Snapshot(-1, (), ())
        self._users: dict[int, UserRecord] = {}
        self._tokens: dict[int, TokenRecord] = {}
        self._serializer: URLSafeTimedSerializer | None = None
        self._held: dict[int, tuple[Credential, anyio.CancelScope]] = {}
        self._ids = count()
        self._used: dict[int, str] = {}
        self._refreshing = anyio.Lock()
        self._checked = -MISS_REFRESH_SECONDS

    # --- life ----------------------------------------------------------------------------

    async def start(self, store: Store) -> None:
        """Read the accounts and the signing key."""
        self._store = store
        configured = self.settings.secret_key
        if configured is not None and configured.get_secret_value():
            key = configured.get_secret_value()
        else:
            key = await store.run(partial(sql.signing_secret, new=secrets.token_urlsafe(48)))
        self._serializer = URLSafeTimedSerializer(key, salt=_SALT)
        await self.refresh(force=True)
        if self.mode == "closed":
            log.warning(
                "no user exists and %s is not a loopback address: every request is refused "
                "until one is created (psyche-sse user add NAME)",
                self.settings.host,
            )

    async def watch(self) -> None:
        """Forever: notice accounts changed by another process, once a second."""
        saved = anyio.current_time()
        while True:
            await anyio.sleep(POLL_SECONDS)
            try:
                await self.refresh()
                if self._used and anyio.current_time() - saved >= TOKEN_USE_SAVE_SECONDS:
                    saved = anyio.current_time()
                    await self.save_token_use()
            except Exception:
                log.exception("cannot read the accounts")

    async def save_token_use(self) -> None:
        used, self._used = self._used, {}
        if used and self._store is not None:
            await self._store.write(partial(sql.touch_tokens, used=used))

    async def refresh(self, *, force: bool = False) -> bool:
        """Read the accounts again if they changed; True when they did."""
        store = self._store
        if store is None:
            return False
        async with self._refreshing:
            self._checked = anyio.current_time()
            if not force and await store.run(sql.generation) == self._snapshot.generation:
                return False
            snap = await store.run(sql.snapshot)
            self._snapshot = snap
            self._users = {u.id: u for u in snap.users}
            self._tokens = {t.id: t for t in snap.tokens}
            self._end_revoked()
            return True

    # --- who is asking -------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """``local``: no user exists and only this machine can connect (or the operator
        said so): every request is the local user. ``closed``: no user exists on a server
        others can reach: everything is refused. ``accounts``: sign-in required."""
        if self._users:
            return "accounts"
        return "local" if self._open else "closed"

    async def from_token(self, token: str) -> tuple[User, Credential] | None:
        parsed = parse_token(token)
        if parsed is None:
            return None
        token_id, secret = parsed
        if (
            token_id not in self._tokens
            and anyio.current_time() - self._checked >= MISS_REFRESH_SECONDS
        ):
            # Perhaps made a moment ago, by the CLI.
            await self.refresh()
        record = self._tokens.get(token_id)
        if record is None or not token_matches(secret, record.hash):
            return None
        user = self._users.get(record.user_id)
        if user is None:
            return None
        self._used[token_id] = utc_now()
        return _user(user), Credential(user.id, token_id=token_id)

    def from_cookie(self, value: str) -> tuple[User, Credential] | None:
        if self._serializer is None:
            return None
        try:
            data = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        user_id, epoch = data.get("u"), data.get("e")
        if not isinstance(user_id, int) or not isinstance(epoch, int):
            return None
        user = self._users.get(user_id)
        if user is None or user.epoch != epoch:
            return None
        return _user(user), Credential(user_id, epoch=epoch)

    def cookie_for(self, user: UserRecord) -> str:
        assert self._serializer is not None, "start the gate first"
        return str(self._serializer.dumps({"u": user.id, "e": user.epoch}))

    @property
    def max_age(self) -> int:
        return int(self.settings.login_days * 86400)

    def holds(self, credential: Credential) -> bool:
        if credential.user_id is None:
            return self.mode == "local"
        user = self._users.get(credential.user_id)
        if user is None:
            return False
        if credential.token_id is not None:
            token = self._tokens.get(credential.token_id)
            return token is not None and token.user_id == user.id
        return credential.epoch == user.epoch

    # --- requests running on a credential ------------------------------------------------

    @contextmanager
    def holding(self, credential: Credential) -> Iterator[anyio.CancelScope]:
        """A cancel scope for a request on ``credential``: cancelled when it stops holding."""
        scope = anyio.CancelScope()
        key = next(self._ids)
        self._held[key] = (credential, scope)
        try:
            with scope:
                yield scope
        finally:
            del self._held[key]

    def _end_revoked(self) -> None:
        for credential, scope in list(self._held.values()):
            if not self.holds(credential):
                scope.cancel()

    @property
    def held(self) -> int:
        """Requests running on a credential now."""
        return len(self._held)
