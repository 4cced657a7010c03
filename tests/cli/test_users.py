"""``psyche-sse user …`` and ``psyche-sse token …`` on a database of the test's own, and
``serve`` refusing an address others can reach when no account exists."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from tests.live import environ, run_psyche

from psyche_sse.accounts import parse_token
from psyche_sse.cli import main


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


class Run(Protocol):
    def __call__(self, *args: str, stdin: str = "") -> Result: ...


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    """``psyche-sse ARGS`` in this process on ``tmp_path``'s database, ``stdin`` its input."""
    monkeypatch.setenv("PSYCHE_DB", str(tmp_path / "psyche.db"))
    monkeypatch.setenv("PSYCHE_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")

    def run(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def test_the_first_user_is_an_admin_and_the_next_is_not(run: Run) -> None:
    first = run("user", "add", "ada", "--password-stdin", stdin="a-long-password\n")
    assert first.returncode == 0, first.stderr
    assert "ada, an admin" in first.stdout
    second = run("user", "add", "ben", "--password-stdin", stdin="another-password\n")
    assert second.returncode == 0 and "ben, a user" in second.stdout
    third = run("user", "add", "cy", "--admin", "--password-stdin", stdin="third-password\n")
    assert "cy, an admin" in third.stdout
    listing = run("user", "list").stdout.splitlines()
    assert listing[0].split() == ["ID", "NAME", "ADMIN", "SESSIONS", "CREATED"]
    rows = {line.split()[1]: line.split() for line in listing[1:]}
    assert rows["ada"][2] == "yes" and rows["ben"][2] == "0" and rows["cy"][2] == "yes"
    for line in listing:
        assert "password" not in line and "$argon2" not in line


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("user", "add", "ada", "--password-stdin"), "short\n", "at least 8 characters"),
        (("user", "add", "ada", "--password-stdin"), "x" * 5000 + "\n", "at most 1024"),
        (("user", "add", "a b", "--password-stdin"), "a-long-password\n", "letters, digits"),
        (("user", "add", "ada"), "", "use --password-stdin"),
        (("user", "remove", "nobody"), "", "no user named 'nobody'"),
        (("user", "passwd", "nobody", "--password-stdin"), "a-long-password\n", "no user"),
        (("token", "create", "laptop", "--user", "nobody"), "", "no user named"),
        (("token", "revoke", "99"), "", "no live token with id 99"),
        (("token", "create", "", "--user", "ada"), "", "one line of printable text"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    run: Run, args: tuple[str, ...], stdin: str, message: str
) -> None:
    result = run(*args, stdin=stdin)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_name_is_refused_whatever_its_case(run: Run) -> None:
    run("user", "add", "ada", "--password-stdin", stdin="a-long-password\n")
    again = run("user", "add", "ADA", "--password-stdin", stdin="a-long-password\n")
    assert again.returncode == 2 and "already a user named 'ADA'" in again.stderr


def test_a_token_is_shown_once_listed_without_itself_and_revoked(run: Run) -> None:
    run("user", "add", "ada", "--password-stdin", stdin="a-long-password\n")
    made = run("token", "create", "my laptop", "--user", "ada")
    assert made.returncode == 0
    token = made.stdout.strip()
    parsed = parse_token(token)
    assert parsed is not None
    assert "shown this once" in made.stderr
    listing = run("token", "list")
    assert "my laptop" in listing.stdout and "live" in listing.stdout
    assert parsed[1] not in listing.stdout
    assert run("token", "list", "--user", "ada").stdout == listing.stdout
    revoked = run("token", "revoke", str(parsed[0]))
    assert revoked.returncode == 0
    assert "revoked 20" in run("token", "list").stdout  # "revoked <when>"


def test_passwd_and_remove(run: Run) -> None:
    run("user", "add", "ada", "--password-stdin", stdin="a-long-password\n")
    run("user", "add", "ben", "--password-stdin", stdin="another-password\n")
    changed = run("user", "passwd", "ben", "--password-stdin", stdin="a-new-password\n")
    assert changed.returncode == 0 and "signed out everywhere" in changed.stdout
    refused = run("user", "remove", "ada")
    assert refused.returncode == 2 and "only admin" in refused.stderr
    assert run("user", "remove", "ben").returncode == 0
    assert "ben" not in run("user", "list").stdout


@pytest.mark.slow
def test_serve_on_an_exposed_address_with_no_user_exits_2_with_one_line(tmp_path: Path) -> None:
    """192.0.2.1 (a documentation address) is on no interface, so even a check that let it
    through would listen nowhere; ``0.0.0.0`` is refused the same way (the check itself,
    below, in process)."""
    host = "192.0.2.1"
    (tmp_path / "none.toml").write_text("")
    env = environ(
        PSYCHE_DB=str(tmp_path / "psyche.db"),
        PSYCHE_CONFIG=str(tmp_path / "none.toml"),
        PSYCHE_HOST=host,
        PSYCHE_PORT="0",
    )
    done = run_psyche(env, "serve")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"refusing to serve {host} with no accounts" in done.stderr
    assert "--insecure-no-auth" in done.stderr


@pytest.mark.slow
def test_insecure_no_auth_lets_it_start_with_a_warning(tmp_path: Path) -> None:
    """192.0.2.1 (documentation addresses) is on no interface: past the check, the bind
    itself fails, so nothing listens, yet the warning shows the check let it through."""
    (tmp_path / "none.toml").write_text("")
    env = environ(
        PSYCHE_DB=str(tmp_path / "psyche.db"),
        PSYCHE_CONFIG=str(tmp_path / "none.toml"),
        PSYCHE_PORT="0",
    )
    done = run_psyche(env, "serve", "--host", "192.0.2.1", "--insecure-no-auth")
    assert "with no accounts (--insecure-no-auth)" in done.stderr
    assert "refusing" not in done.stderr


def test_an_exposed_address_with_a_user_passes_the_check(run: Run, tmp_path: Path) -> None:
    from psyche_sse.accounts_cli import check_exposure
    from psyche_sse.config import Settings
    from psyche_sse.errors import InputError

    exposed = Settings(host="0.0.0.0", db=tmp_path / "psyche.db")
    with pytest.raises(InputError, match="refusing"):
        check_exposure(exposed)
    run("user", "add", "ada", "--password-stdin", stdin="a-long-password\n")
    check_exposure(exposed)  # no error
    check_exposure(Settings(host="::1", db=tmp_path / "other.db"))  # loopback: no error
