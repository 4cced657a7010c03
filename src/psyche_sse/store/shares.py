"""Links that share one session read-only: every SQL statement about them.

Plain functions of a connection, as in :mod:`.queries`. Only a hash of a link's token is
stored (sha256: the token is 256 random bits, nothing to slow a guess down for). A session
has one link at a time; deleting the session deletes its link.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from .connection import Connection


@dataclass(frozen=True, slots=True)
class ShareRecord:
    session_id: str
    created: str
    created_by: int | None


def replace_share(
    conn: Connection, *, session_id: str, digest: str, now: str, user_id: int | None
) -> ShareRecord:
    """The session's link is now the one whose token hashes to ``digest``; any other it had
    stops working."""
    conn.execute("DELETE FROM shares WHERE session_id = ?", (session_id,))
    conn.execute(
        "INSERT INTO shares (session_id, hash, created, created_by) VALUES (?, ?, ?, ?)",
        (session_id, digest, now, user_id),
    )
    return ShareRecord(session_id, now, user_id)


def revoke_shares(conn: Connection, *, session_id: str) -> int:
    """Stop sharing the session: how many links stopped working (0 or 1)."""
    return conn.execute("DELETE FROM shares WHERE session_id = ?", (session_id,)).rowcount


def share_of(conn: Connection, *, session_id: str) -> ShareRecord | None:
    """The session's link, if it has one."""
    row = conn.execute(
        "SELECT session_id, created, created_by FROM shares WHERE session_id = ?",
        (session_id,),
    ).fetchone()
    return None if row is None else ShareRecord(row[0], row[1], row[2])


def shared_session(conn: Connection, *, digest: str) -> str | None:
    """The id of the session the link with this token hash opens; None when none does."""
    row = conn.execute("SELECT session_id FROM shares WHERE hash = ?", (digest,)).fetchone()
    return None if row is None else str(row[0])


def live_digests(conn: Connection, *, digests: Collection[str]) -> set[str]:
    """Which of ``digests`` still open a session."""
    if not digests:
        return set()
    marks = ", ".join("?" * len(digests))
    rows = conn.execute(f"SELECT hash FROM shares WHERE hash IN ({marks})", tuple(digests))
    return {str(row[0]) for row in rows}
