"""``psyche-sse run``'s text at a narrow width: every line fits, and no word of a reply is
broken across lines, whether the width comes from ``COLUMNS`` or from a real terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import termios
import time

import pytest
import wcwidth
from tests.cli.test_cli import EXE, Run, env, run  # noqa: F401  (a fixture, used by ``cli``)
from tests.factories import AGENT_IDS

SITUATION = "I was passed over for promotion and I am tired of pretending it does not matter"
SEED = "7"


@pytest.fixture
def cli(request: pytest.FixtureRequest) -> Run:
    command: Run = request.getfixturevalue("run")
    return command


def replies(cli: Run, *args: str) -> list[str]:
    """The final text of each turn of the run, from its ``--json`` output."""
    result = cli("run", "--json", "--seed", SEED, *args, SITUATION, PSYCHE_OFFLINE_TPS="0")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    return [e["final_content"] for e in events if e["type"] == "agent_processing_complete"]


def assert_fits_with_words_whole(screen: list[str], texts: list[str], width: int) -> None:
    """Every line at most ``width`` cells; each reply's words appear in order, each whole."""
    assert all(wcwidth.width(line) <= width for line in screen), [
        line for line in screen if wcwidth.width(line) > width
    ]
    words = " ".join(" ".join(screen).split())
    for text in texts:
        assert len(text) > 2 * width  # long enough to be wrapped
        assert " ".join(text.split()) in words


def test_text_at_60_columns_breaks_no_word(cli: Run) -> None:
    texts = replies(cli, "--rounds", "2")
    assert len(texts) == 10
    result = cli(
        "run", "--seed", SEED, "--rounds", "2", SITUATION, PSYCHE_OFFLINE_TPS="0", COLUMNS="60"
    )
    assert result.returncode == 0, result.stderr
    screen = result.stdout.split("\n")
    assert_fits_with_words_whole(screen, texts, 60)
    # The replies sit under their agent's name, indented; the width is used, not wasted.
    for name in AGENT_IDS:
        assert f"{name}\n  " in result.stdout
    assert max(wcwidth.width(line) for line in screen) >= 50


def read_terminal(master: int, process: subprocess.Popen[bytes], timeout: float) -> bytes:
    """All the child writes to the terminal, until it ends."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    process.wait(timeout=max(0.1, deadline - time.monotonic()))
    return out


@pytest.mark.slow
def test_in_a_real_terminal_of_60_columns_with_colours(cli: Run) -> None:
    texts = replies(cli)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    extra = {k: v for k, v in env(PSYCHE_OFFLINE_TPS="200").items() if k != "COLUMNS"}
    process = subprocess.Popen(
        [*EXE, "run", "--seed", SEED, SITUATION],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in extra.items() if k != "NO_COLOR"},
    )
    os.close(slave)
    try:
        raw = read_terminal(master, process, timeout=120).decode()
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "\x1b[" in raw  # a terminal: in colour
    # What stays on each line: the text after its last carriage return (the spinner's
    # frames are rewritten in place, then erased).
    screen = [line.rsplit("\r", 1)[-1] for line in raw.replace("\r\n", "\n").split("\n")]
    assert_fits_with_words_whole(screen, texts, 60)
    assert any(len(line) > 60 for line in screen)  # colour codes are there, and take no room
