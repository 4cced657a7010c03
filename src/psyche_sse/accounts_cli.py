"""``psyche-sse user …`` and ``psyche-sse token …``: the accounts, from the command line,
on the database the settings name (``PSYCHE_DB``, or ``PSYCHE_DATABASE_URL``); and the
check ``serve`` makes before it listens on an address other machines can reach."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import TextIO

from .accounts import MAX_PASSWORD_CHARS, Accounts, check_password
from .config import Settings
from .errors import InputError
from .store import Store
from .store import accounts as sql

log = logging.getLogger(__name__)

PROG = "psyche-sse"
EXIT_USAGE = 2


def check_exposure(settings: Settings) -> None:
    """:class:`InputError` when ``serve`` would let anyone who can reach it in: a
    non-loopback address, no user, and no ``--insecure-no-auth``."""
    if settings.loopback():
        return
    store = Store.open(settings.database())
    try:
        users = store.run_blocking(sql.count_users)
    finally:
        store.close()
    if users:
        return
    if settings.insecure_no_auth:
        log.warning(
            "serving %s with no accounts (--insecure-no-auth): anyone who can reach it reads, "
            "deletes and starts every session",
            settings.host,
        )
        return
    raise InputError(
        f"refusing to serve {settings.host} with no accounts: create one first "
        "(psyche-sse user add NAME) or pass --insecure-no-auth"
    )


def read_password(from_stdin: bool, *, stdin: TextIO | None = None, confirm: bool = True) -> str:
    """The password: the first line of standard input, or asked for twice at the terminal."""
    source = stdin or sys.stdin
    if from_stdin:
        line = source.readline(MAX_PASSWORD_CHARS + 2)
        return check_password(line.removesuffix("\n").removesuffix("\r"))
    if not source.isatty():
        raise InputError("there is no terminal to ask for the password: use --password-stdin")
    password = check_password(getpass.getpass("Password: "))
    if confirm and getpass.getpass("Again: ") != password:
        raise InputError("the two passwords differ")
    return password


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def accounts_command(
    args: argparse.Namespace, settings: Settings, out: TextIO | None = None
) -> int:
    """Run ``user ACTION`` or ``token ACTION``; bad input is one line and exit code 2."""
    out = out or sys.stdout
    try:
        store = Store.open(settings.database())
        try:
            run = _user if args.command == "user" else _token
            run(args, Accounts(store), out)
        finally:
            store.close()
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _user(args: argparse.Namespace, accounts: Accounts, out: TextIO) -> None:
    if args.action == "add":
        password = read_password(args.password_stdin)
        user, adopted = accounts.add_user(args.name, password, admin=args.admin)
        role = "an admin" if user.admin else "a user"
        print(f"added {user.name}, {role}", file=out)
        if adopted:
            sessions = "session now belongs" if adopted == 1 else "sessions now belong"
            print(f"{adopted} existing {sessions} to {user.name}", file=out)
    elif args.action == "list":
        users = accounts.users()
        if not users:
            print("no users: the server lets local requests in with no sign-in", file=out)
            return
        rows = [["ID", "NAME", "ADMIN", "SESSIONS", "CREATED"]]
        rows += [
            [str(u.id), u.name, "yes" if u.admin else "", str(u.sessions), u.created] for u in users
        ]
        _table(rows, out)
    elif args.action == "remove":
        user = accounts.remove_user(args.name)
        print(f"removed {user.name}; its sessions are kept, for admins to see", file=out)
    elif args.action == "passwd":
        accounts.user(args.name)  # an unknown name is told before the password is asked
        password = read_password(args.password_stdin)
        user = accounts.set_password(args.name, password)
        print(f"new password for {user.name}; it is signed out everywhere", file=out)


def _token(args: argparse.Namespace, accounts: Accounts, out: TextIO) -> None:
    if args.action == "create":
        record, token = accounts.create_token(args.name, args.user)
        print(token, file=out)
        print(
            f"token {record.id} for {record.user_name}: shown this once, keep it safe",
            file=sys.stderr,
        )
    elif args.action == "list":
        tokens = accounts.tokens(args.user)
        if not tokens:
            print("no tokens", file=out)
            return
        rows = [["ID", "NAME", "USER", "CREATED", "LAST USED", "STATE"]]
        rows += [
            [
                str(t.id),
                t.name,
                t.user_name,
                t.created,
                t.last_used or "never",
                f"revoked {t.revoked}" if t.revoked else "live",
            ]
            for t in tokens
        ]
        _table(rows, out)
    elif args.action == "revoke":
        accounts.revoke_token(args.id)
        print(f"revoked token {args.id}", file=out)
