"""Every SQL statement about accounts: users, API tokens, session owners, and the counter
a server watches to see accounts change.

Plain functions of a connection, in the SQL both databases take, as in :mod:`.queries`.
Each write bumps ``accounts_state.generation`` in the same transaction, so a server reading
that one number (once a second) learns of a user removed or a token revoked by another process.
"""

from __future__ import annotations

from dataclasses import dataclass

from .connection import Connection


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    name: str
    admin: bool
    created: str
    epoch: int
    sessions: int = 0


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: int
    name: str
    user_id: int
    user_name: str
    hash: str
    created: str
    last_used: str | None
    revoked: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a server keeps in memory to authenticate requests: every user, and every token
    not revoked, as of ``generation``."""

    generation: int
    users: tuple[UserRecord, ...]
    tokens: tuple[TokenRecord, ...]


def _bump(conn: Connection) -> None:
    conn.execute("UPDATE accounts_state SET generation = generation + 1 WHERE id = 1")


def generation(conn: Connection) -> int:
    return int(conn.execute("SELECT generation FROM accounts_state WHERE id = 1").fetchone()[0])


def count_users(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])


# --- users ---------------------------------------------------------------------------------


def _user(row: tuple[object, ...]) -> UserRecord:
    return UserRecord(
        id=int(str(row[0])),
        name=str(row[1]),
        admin=bool(row[2]),
        created=str(row[3]),
        epoch=int(str(row[4])),
        sessions=int(str(row[5])) if len(row) > 5 else 0,
    )


def insert_user(
    conn: Connection, *, name: str, password_hash: str, admin: bool, now: str
) -> tuple[UserRecord, int]:
    """Add a user; the first one is an admin whatever ``admin`` says, and adopts every
    session made with no accounts. Returns the user and how many sessions it adopted.
    The driver's integrity error when the name is taken (in any case)."""
    # The bump first: it locks the counter's row until the commit, so two users added at
    # once are counted one after the other (never both the first).
    _bump(conn)
    first = count_users(conn) == 0
    row = conn.execute(
        "INSERT INTO users (name, password, admin, created) VALUES (?, ?, ?, ?) RETURNING id",
        (name, password_hash, admin or first, now),
    ).fetchone()
    user_id = int(row[0])
    adopted = 0
    if first:
        adopted = conn.execute(
            "UPDATE sessions SET owner = ? WHERE owner IS NULL", (user_id,)
        ).rowcount
    return UserRecord(user_id, name, admin or first, now, 0), adopted


def user_by_name(conn: Connection, name: str) -> tuple[UserRecord, str] | None:
    """The user and its password hash, or None."""
    row = conn.execute(
        "SELECT id, name, admin, created, epoch, password FROM users WHERE lower(name) = lower(?)",
        (name,),
    ).fetchone()
    return None if row is None else (_user(row[:5]), str(row[5]))


def list_users(conn: Connection) -> list[UserRecord]:
    rows = conn.execute(
        "SELECT u.id, u.name, u.admin, u.created, u.epoch,"
        " (SELECT count(*) FROM sessions s WHERE s.owner = u.id)"
        " FROM users u ORDER BY u.id"
    ).fetchall()
    return [_user(row) for row in rows]


def remove_user(conn: Connection, *, user_id: int) -> bool:
    """Delete the user and its tokens; its sessions stay, owned by no one (admins see them)."""
    removed = conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount > 0
    if removed:
        conn.execute("UPDATE sessions SET owner = NULL WHERE owner = ?", (user_id,))
        _bump(conn)
    return removed


def set_password(
    conn: Connection, *, user_id: int, password_hash: str, sign_out: bool = True
) -> bool:
    """A new password hash; with ``sign_out`` every cookie of the user stops working."""
    bump = 1 if sign_out else 0
    changed = (
        conn.execute(
            "UPDATE users SET password = ?, epoch = epoch + ? WHERE id = ?",
            (password_hash, bump, user_id),
        ).rowcount
        > 0
    )
    if changed and sign_out:
        _bump(conn)
    return changed


def sign_out_everywhere(conn: Connection, *, user_id: int) -> bool:
    changed = conn.execute("UPDATE users SET epoch = epoch + 1 WHERE id = ?", (user_id,)).rowcount
    if changed:
        _bump(conn)
    return changed > 0


# --- tokens --------------------------------------------------------------------------------

_TOKEN_COLUMNS = (
    "t.id, t.name, t.user_id, u.name, t.hash, t.created, t.last_used, t.revoked"
    " FROM api_tokens t JOIN users u ON u.id = t.user_id"
)


def _token(row: tuple[object, ...]) -> TokenRecord:
    return TokenRecord(
        id=int(str(row[0])),
        name=str(row[1]),
        user_id=int(str(row[2])),
        user_name=str(row[3]),
        hash=str(row[4]),
        created=str(row[5]),
        last_used=None if row[6] is None else str(row[6]),
        revoked=None if row[7] is None else str(row[7]),
    )


def insert_token(conn: Connection, *, name: str, user_id: int, token_hash: str, now: str) -> int:
    row = conn.execute(
        "INSERT INTO api_tokens (name, user_id, hash, created) VALUES (?, ?, ?, ?) RETURNING id",
        (name, user_id, token_hash, now),
    ).fetchone()
    _bump(conn)
    return int(row[0])


def list_tokens(conn: Connection, *, user_id: int | None = None) -> list[TokenRecord]:
    where, args = ("WHERE t.user_id = ?", (user_id,)) if user_id is not None else ("", ())
    rows = conn.execute(f"SELECT {_TOKEN_COLUMNS} {where} ORDER BY t.id", args).fetchall()
    return [_token(row) for row in rows]


def revoke_token(conn: Connection, *, token_id: int, now: str) -> bool:
    """Revoke the token; False when there is none with this id or it was revoked already."""
    changed = conn.execute(
        "UPDATE api_tokens SET revoked = ? WHERE id = ? AND revoked IS NULL", (now, token_id)
    ).rowcount
    if changed:
        _bump(conn)
    return changed > 0


def touch_tokens(conn: Connection, *, used: dict[int, str]) -> None:
    """When each token was last used (no bump: nothing about who may do what changed)."""
    conn.executemany(
        "UPDATE api_tokens SET last_used = ? WHERE id = ?",
        [(when, token_id) for token_id, when in used.items()],
    )


# --- what a server keeps -------------------------------------------------------------------


def snapshot(conn: Connection) -> Snapshot:
    """Every user and every live token, read in one transaction."""
    with conn.transaction():
        gen = generation(conn)
        users = conn.execute("SELECT id, name, admin, created, epoch FROM users").fetchall()
        tokens = conn.execute(f"SELECT {_TOKEN_COLUMNS} WHERE t.revoked IS NULL").fetchall()
    return Snapshot(gen, tuple(_user(r) for r in users), tuple(_token(r) for r in tokens))


def signing_secret(conn: Connection, new: str) -> str:
    """The key kept in the database for signing cookies: ``new`` when there is none yet."""
    with conn.transaction(immediate=True):
        conn.execute("UPDATE accounts_state SET secret = ? WHERE id = 1 AND secret IS NULL", (new,))
        row = conn.execute("SELECT secret FROM accounts_state WHERE id = 1").fetchone()
    return str(row[0])
