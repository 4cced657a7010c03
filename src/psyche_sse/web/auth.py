"""Who is asking: the user a request acts as.

The one contract the routes rely on: :func:`user_of` names the request's user, and
:func:`require_admin` refuses anyone else. With no accounts (a loopback server and no user
created) every request is :data:`LOCAL_USER`, an admin.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from .errors import HTTPError

SCOPE_KEY = "psyche.user"


@dataclass(frozen=True, slots=True)
class User:
    """A signed-in user; ``id`` is None for the local user of a server with no accounts."""

    id: int | None
    name: str
    admin: bool


LOCAL_USER = User(id=None, name="local", admin=True)


def user_of(conn: HTTPConnection) -> User:
    """The user the request acts as (set by the authentication middleware)."""
    user = conn.scope.get(SCOPE_KEY)
    return user if isinstance(user, User) else LOCAL_USER


def account_of(conn: HTTPConnection) -> User | None:
    """The signed-in user the page shows (with a sign-out button); None with no accounts."""
    user = user_of(conn)
    return user if user.id is not None else None


def require_admin(conn: HTTPConnection) -> User:
    """The request's user when an admin; otherwise a 404, as for anything they may not see."""
    user = user_of(conn)
    if not user.admin:
        raise HTTPError(404, "there is nothing here", code="not_found")
    return user
