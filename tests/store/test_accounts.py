"""Accounts in the store: the migration of a database from before them, the first admin
adopting its sessions, tokens kept only as hashes, and the counter a server watches."""

from __future__ import annotations

from functools import partial

import pytest
from tests import databases
from tests.databases import Database

from psyche_sse.accounts import (
    Accounts,
    AccountsError,
    Passwords,
    parse_token,
    token_hash,
    token_matches,
)
from psyche_sse.errors import InputError
from psyche_sse.store import Store, queries
from psyche_sse.store import accounts as sql
from psyche_sse.store.connection import Connection

ACCOUNTS_STEP = 3


def _old_sessions(conn: Connection, sessions: list[str]) -> None:
    for n, session_id in enumerate(sessions):
        when = f"2026-11-0{n + 1}T10:00:00+00:00"
        conn.execute(
            "INSERT INTO sessions (id, title, created, updated) VALUES (?, ?, ?, ?)",
            (session_id, f"Old {n}", when, when),
        )


def old_database(db: Database, sessions: list[str]) -> None:
    """A database as the release before accounts left it: schema steps 1 and 2, sessions."""
    databases.old_database(db, ACCOUNTS_STEP - 1)
    databases.raw(db, partial(_old_sessions, sessions=sessions), write=True)


def test_a_database_from_before_accounts_gives_its_sessions_to_the_first_admin(
    db: Database,
) -> None:
    old_database(db, ["old1", "old2", "old3"])
    store = Store.open(db)
    try:
        assert store.run_blocking(lambda c: queries.count_sessions(c)) == 3
        accounts = Accounts(store)
        first, adopted = accounts.add_user("ada", "a-long-password")
        assert first.admin and adopted == 3
        second, none = accounts.add_user("ben", "another-password")
        assert not second.admin and none == 0
        theirs = store.run_blocking(lambda c: queries.list_sessions(c, owner=first.id))
        assert sorted(s.id for s in theirs) == ["old1", "old2", "old3"]
        assert store.run_blocking(lambda c: queries.count_sessions(c, owner=second.id)) == 0
        memory = store.run_blocking(lambda c: queries.council_memory(c, session_id="old1", keep=1))
        assert memory is not None and memory.owner == first.id
    finally:
        store.close()


def test_sessions_made_later_belong_to_whoever_made_them(db: Database) -> None:
    store = Store.open(db)
    try:
        ada, _ = Accounts(store).add_user("ada", "a-long-password")
        store.write_now(
            lambda c: queries.reserve_ids(
                c, session_id="new", ceiling=1000, title="New", now="2026-11-30", owner=ada.id
            )
        )
        store.write_now(
            lambda c: queries.reserve_ids(
                c, session_id="local", ceiling=1000, title="Local", now="2026-11-30"
            )
        )
        mine = store.run_blocking(lambda c: queries.list_sessions(c, owner=ada.id))
        assert [s.id for s in mine] == ["new"]
        assert store.run_blocking(lambda c: queries.count_sessions(c)) == 2
    finally:
        store.close()


def test_passwords_are_stored_as_argon2_hashes_and_checked(db: Database) -> None:
    store = Store.open(db)
    try:
        Accounts(store).add_user("ada", "a-long-password")
        found = store.run_blocking(lambda c: sql.user_by_name(c, "ADA"))  # names ignore case
        assert found is not None
        user, stored = found
        assert user.name == "ada"
        assert stored.startswith("$argon2id$") and "a-long-password" not in stored
        passwords = Passwords()
        assert passwords.verify(stored, "a-long-password")
        assert not passwords.verify(stored, "a-wrong-password")
        assert not passwords.verify(None, "a-long-password")  # no such user: still hashed
    finally:
        store.close()


def test_tokens_are_kept_as_hashes_and_revoked(db: Database) -> None:
    store = Store.open(db)
    try:
        accounts = Accounts(store)
        accounts.add_user("ada", "a-long-password")
        before = store.run_blocking(sql.generation)
        record, token = accounts.create_token("laptop", "ada")
        parsed = parse_token(token)
        assert parsed is not None and parsed[0] == record.id
        (stored,) = accounts.tokens("ada")
        assert stored.hash == token_hash(parsed[1]) and parsed[1] not in stored.hash
        assert token_matches(parsed[1], stored.hash)
        assert not token_matches(parsed[1] + "x", stored.hash)
        snap = store.run_blocking(sql.snapshot)
        assert [t.id for t in snap.tokens] == [record.id]
        accounts.revoke_token(record.id)
        assert store.run_blocking(sql.snapshot).tokens == ()
        assert store.run_blocking(sql.generation) > before
        with pytest.raises(AccountsError, match="no live token"):
            accounts.revoke_token(record.id)
    finally:
        store.close()


def test_every_change_of_who_may_do_what_moves_the_generation(db: Database) -> None:
    store = Store.open(db)
    try:
        accounts = Accounts(store)
        seen = [store.run_blocking(sql.generation)]

        def moved() -> bool:
            seen.append(store.run_blocking(sql.generation))
            return seen[-1] > seen[-2]

        accounts.add_user("ada", "a-long-password")
        assert moved()
        accounts.add_user("ben", "another-password")
        assert moved()
        accounts.set_password("ben", "a-new-password")
        assert moved()
        ben = accounts.user("ben")
        assert ben.epoch == 1  # his cookies stop working
        accounts.remove_user("ben")
        assert moved()
        assert [u.name for u in accounts.users()] == ["ada"]
    finally:
        store.close()


def test_the_only_admin_is_not_removed_while_others_remain(db: Database) -> None:
    store = Store.open(db)
    try:
        accounts = Accounts(store)
        accounts.add_user("ada", "a-long-password")
        accounts.add_user("ben", "another-password")
        with pytest.raises(AccountsError, match="only admin"):
            accounts.remove_user("ada")
        accounts.remove_user("ben")
        accounts.remove_user("ada")  # the last user of all may go
        assert accounts.users() == []
    finally:
        store.close()


@pytest.mark.parametrize(
    ("name", "password", "message"),
    [
        ("", "a-long-password", "cannot be empty"),
        ("a b", "a-long-password", "letters, digits"),
        ("x" * 65, "a-long-password", "at most 64"),
        ("<script>", "a-long-password", "letters, digits"),
        ("ada", "short", "at least 8"),
        ("ada", "x" * 1025, "at most 1024"),
    ],
)
def test_bad_names_and_passwords_are_refused(
    db: Database, name: str, password: str, message: str
) -> None:
    store = Store.open(db)
    try:
        with pytest.raises(InputError, match=message):
            Accounts(store).add_user(name, password)
    finally:
        store.close()


def test_a_name_is_taken_whatever_its_case(db: Database) -> None:
    store = Store.open(db)
    try:
        accounts = Accounts(store)
        accounts.add_user("Ada", "a-long-password")
        with pytest.raises(AccountsError, match="already a user named 'ada'"):
            accounts.add_user("ada", "another-password")
        assert [u.name for u in accounts.users()] == ["Ada"]
        assert accounts.user("ADA").name == "Ada"
    finally:
        store.close()


def test_the_signing_key_is_made_once(db: Database) -> None:
    store = Store.open(db)
    try:
        first = store.run_blocking(lambda c: sql.signing_secret(c, "one"))
        again = store.run_blocking(lambda c: sql.signing_secret(c, "two"))
        assert first == again == "one"
    finally:
        store.close()
