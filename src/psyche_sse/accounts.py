"""Accounts: names, passwords and API tokens, and the operations the CLI offers on them.

Passwords are hashed with Argon2id (argon2-cffi's :class:`~argon2.PasswordHasher`). An API
token reads ``psy_<id>_<secret>``: the store keeps only the SHA-256 of the secret, shown once
when the token is made, and a request's secret is compared with it in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from functools import cached_property, partial

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import InputError, StoreError
from .events import utc_now
from .store import Store
from .store import accounts as sql
from .store.accounts import TokenRecord, UserRecord

MAX_NAME_CHARS = 64
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
MAX_TOKEN_NAME_CHARS = 100
TOKEN_PREFIX = "psy_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
_TOKEN = re.compile(r"psy_([0-9]{1,18})_([A-Za-z0-9_-]{20,200})")


def clean_user_name(name: str) -> str:
    """A user name as stored: letters, digits and ``. _ @ -``, at most 64 characters."""
    text = name.strip()
    if not text:
        raise InputError("a user name cannot be empty")
    if len(text) > MAX_NAME_CHARS:
        raise InputError(f"a user name has at most {MAX_NAME_CHARS} characters")
    if not _NAME.fullmatch(text):
        raise InputError(
            "a user name is letters, digits and . _ @ - (starting with a letter or digit)"
        )
    return text


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InputError(f"a password has at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InputError(f"a password has at most {MAX_PASSWORD_CHARS} characters")
    if "\n" in password or "\r" in password or "\0" in password:
        raise InputError("a password is one line")
    return password


def clean_token_name(name: str) -> str:
    text = " ".join(name.split())
    if not text or not text.isprintable():
        raise InputError("a token name is one line of printable text")
    if len(text) > MAX_TOKEN_NAME_CHARS:
        raise InputError(f"a token name has at most {MAX_TOKEN_NAME_CHARS} characters")
    return text


# --- passwords -----------------------------------------------------------------------------


class Passwords:
    """Hashing and checking passwords. Checking a name that has no user still verifies one
    hash (of a random password), so how long a login takes does not tell whether the name
    exists."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()

    @cached_property
    def _dummy(self) -> str:
        return self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return False


# --- tokens --------------------------------------------------------------------------------


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[int, str] | None:
    """``psy_<id>_<secret>`` -> (id, secret); None when it is not a token of ours."""
    match = _TOKEN.fullmatch(token.strip())
    return None if match is None else (int(match.group(1)), match.group(2))


def token_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(secret), stored_hash)


# --- what the CLI does ---------------------------------------------------------------------


class AccountsError(InputError):
    """An account operation that cannot be done (unknown user, name taken...)."""


class Accounts:
    """Account operations on an open :class:`Store`, blocking (for the CLI)."""

    def __init__(self, store: Store, passwords: Passwords | None = None) -> None:
        self.store = store
        self.passwords = passwords or Passwords()

    def add_user(self, name: str, password: str, *, admin: bool = False) -> tuple[UserRecord, int]:
        """The new user (the first is an admin) and how many sessions it adopted."""
        name = clean_user_name(name)
        hashed = self.passwords.hash(check_password(password))
        insert = partial(
            sql.insert_user, name=name, password_hash=hashed, admin=admin, now=utc_now()
        )
        try:
            return self.store.write_now(insert)
        except StoreError as exc:
            if exc.conflict:
                raise AccountsError(f"there is already a user named {name!r}") from None
            raise

    def users(self) -> list[UserRecord]:
        return self.store.run_blocking(sql.list_users)

    def user(self, name: str) -> UserRecord:
        found = self.store.run_blocking(partial(sql.user_by_name, name=name.strip()))
        if found is None:
            raise AccountsError(f"there is no user named {name.strip()!r}")
        return found[0]

    def remove_user(self, name: str) -> UserRecord:
        user = self.user(name)
        users = self.users()
        if user.admin and len(users) > 1 and sum(u.admin for u in users) == 1:
            raise AccountsError(
                f"{user.name} is the only admin: make another admin first (user add --admin)"
            )
        self.store.write_now(partial(sql.remove_user, user_id=user.id))
        return user

    def set_password(self, name: str, password: str) -> UserRecord:
        """A new password; the user's sessions in browsers end (they sign in again)."""
        user = self.user(name)
        hashed = self.passwords.hash(check_password(password))
        self.store.write_now(partial(sql.set_password, user_id=user.id, password_hash=hashed))
        return user

    def create_token(self, name: str, user_name: str) -> tuple[TokenRecord, str]:
        """A new token for the user: its record and the token itself, to show once."""
        name = clean_token_name(name)
        user = self.user(user_name)
        secret = secrets.token_urlsafe(32)
        token_id = self.store.write_now(
            partial(
                sql.insert_token,
                name=name,
                user_id=user.id,
                token_hash=token_hash(secret),
                now=utc_now(),
            )
        )
        record = TokenRecord(token_id, name, user.id, user.name, "", utc_now(), None, None)
        return record, f"{TOKEN_PREFIX}{token_id}_{secret}"

    def tokens(self, user_name: str | None = None) -> list[TokenRecord]:
        user_id = self.user(user_name).id if user_name is not None else None
        return self.store.run_blocking(partial(sql.list_tokens, user_id=user_id))

    def revoke_token(self, token_id: int) -> None:
        if not self.store.write_now(partial(sql.revoke_token, token_id=token_id, now=utc_now())):
            raise AccountsError(f"there is no live token with id {token_id}")
