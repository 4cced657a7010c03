"""The ``psyche-sse`` command: ``main(argv)`` in this process, with the environment, the
output streams and the logging set up as a fresh process has them; as a real process where
a signal or a closed pipe is what is tested, or what a fresh interpreter imports."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from tests.factories import AGENT_IDS
from tests.fakes import FakeProvider
from tests.schema import check_event

from psyche_sse.cli import main

EXE = [sys.executable, "-m", "psyche_sse"]
# What the command quiets unless -v: set back after each run.
QUIETED = ("psyche_sse.council", "psyche_sse.llm.client")


def env(**extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PSYCHE_", "OPENAI_", "ANTHROPIC_"))
    }
    return {**base, "PSYCHE_DB": ":memory:", **extra}


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


class Run(Protocol):
    def __call__(self, *args: str, **extra: str) -> Result: ...


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """``psyche-sse ARGS`` with ``extra`` environment variables: its exit code and output.

    The root logger starts with no handler, as in a new process, so the command's own
    ``basicConfig`` writes its log lines to the captured stderr, where a test sees them."""

    def run(*args: str, **extra: str) -> Result:
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        levels = {name: logging.getLogger(name).level for name in QUIETED}
        with monkeypatch.context() as patch:
            for key in list(os.environ):
                if key.startswith(("PSYCHE_", "OPENAI_", "ANTHROPIC_")):
                    patch.delenv(key)
            for key, value in {"PSYCHE_DB": ":memory:", **extra}.items():
                patch.setenv(key, value)
            capsys.readouterr()
            root.handlers = []
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's --help and usage errors
                code = exc.code if isinstance(exc.code, int) else 2
            finally:
                for handler in root.handlers:
                    handler.close()
                root.handlers, root.level = handlers, level
                for name, old in levels.items():
                    logging.getLogger(name).setLevel(old)
            out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def test_help_is_quick_and_lists_commands(run: Run) -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "run" in result.stdout and "serve" in result.stdout
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from psyche_sse.cli import build_parser; build_parser();"
            "print('litellm' in sys.modules, 'pydantic' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.split() == ["False", "False"]


def test_json_prints_five_well_formed_turns(run: Run) -> None:
    result = run(
        "run", "--json", "--seed", "4", "I was passed over for promotion", PSYCHE_OFFLINE_TPS="0"
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    # Who hears whom, then the round, then the conversation's state: each a published event.
    assert events[0]["type"] == "network_update" and events[1]["type"] == "round_started"
    assert events[-1]["type"] == "conversation_state"
    for event in events:
        check_event({k: v for k, v in event.items() if k != "id"})
    ids = [e["id"] for e in events]
    assert ids == list(range(1, len(ids) + 1))
    completes = [e for e in events if e["type"] == "agent_processing_complete"]
    assert [c["agent_id"] for c in completes] == list(AGENT_IDS)
    for c in completes:
        streamed = "".join(
            e["partial_content"]
            for e in events
            if e["type"] == "agent_processing_update"
            and e["metadata"]["turn_id"] == c["metadata"]["turn_id"]
        )
        assert c["final_content"] == streamed and c["metadata"]["status"] == "ok"
        assert c["sentiment"]["label"] in {
            "very_negative",
            "negative",
            "neutral",
            "positive",
            "very_positive",
        }
    assert result.stderr == ""


def test_human_view_shows_each_agent_and_its_sentiment(run: Run) -> None:
    result = run("run", "My sister stopped calling me", PSYCHE_OFFLINE_TPS="0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    positions = [out.index(f"{name}\n") for name in AGENT_IDS]
    assert positions == sorted(positions)
    assert out.count(" · native · ") == 5
    assert "\x1b[" not in out  # not a terminal: no colour codes


@pytest.mark.parametrize(
    ("args", "extra", "message"),
    [
        (["run", "   "], {}, "empty"),
        (["run", "x" * 5000], {}, "too long"),
        (["run", "--model", "psyche/nonsense", "hi"], {}, "unknown offline model"),
        (["run", "--model", "nosuchprovider-model", "hi"], {}, "unknown model"),
        (["run", "--model", "openai/gpt-4o-mini", "hi"], {}, "OPENAI_API_KEY"),
        (["run", "--rounds", "0", "hi"], {}, "--rounds"),
        (["run", "--stimulus", "she called", "hi"], {}, "ROUND:TEXT"),
        (["run", "--rounds", "2", "--stimulus", "3:she called", "hi"], {}, "rounds 1 to 2"),
        (["run", "--stimulus", "1:" + "x" * 501, "hi"], {}, "too long"),
        (["run", "hi"], {"PSYCHE_STREAMING": "maybe"}, "streaming"),
        (["serve", "--port", "1"], {"PSYCHE_MODEL": "openai/gpt-4o-mini"}, "OPENAI_API_KEY"),
        (["serve", "--port", "1"], {"PSYCHE_MODEL_EGO": "psyche/nonsense"}, "unknown offline"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    run: Run, args: list[str], extra: dict[str, str], message: str
) -> None:
    result = run(*args, **extra)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_ctrl_c_cancels_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*EXE, "run", "--json", "I lost my keys"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(PSYCHE_OFFLINE_TPS="20"),
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # wait for the first delta, then interrupt
        lines.append(json.loads(line))
        if lines[-1]["type"] == "agent_processing_update":
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=20)
    lines += [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 130
    complete = [e for e in lines if e["type"] == "agent_processing_complete"]
    assert len(complete) == 1 and complete[0]["metadata"]["status"] == "cancelled"
    [end] = [e for e in lines if e["type"] == "round_complete"]
    assert end["status"] == "cancelled" and lines[-1]["type"] == "conversation_state"
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [["run", "hi"], ["serve", "--port", "1"]])
def test_a_corrupt_database_is_one_line_and_exit_2(
    run: Run, tmp_path: Path, command: list[str]
) -> None:
    db = tmp_path / "psyche.db"
    db.write_text("not a database")
    result = run(*command, PSYCHE_DB=str(db))
    assert result.returncode == 2
    assert str(db) in result.stderr and "not a SQLite database" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unwritable_database_is_one_line_and_exit_2(run: Run, tmp_path: Path) -> None:
    # A file under a plain file's name: no directory can be made there, not even by root.
    (tmp_path / "a-file").write_text("")
    db = tmp_path / "a-file" / "psyche.db"
    result = run("serve", "--port", "1", PSYCHE_DB=str(db))
    assert result.returncode == 2
    assert str(db) in result.stderr and "cannot create its directory" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_reader_that_goes_away_ends_quietly() -> None:
    """``psyche-sse run --json ... | head -1``: no traceback when the pipe closes."""
    proc = subprocess.Popen(
        [*EXE, "run", "--json", "I lost my keys"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(PSYCHE_OFFLINE_TPS="0"),
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = json.loads(proc.stdout.readline())
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=20) == 0
    assert first["type"] == "network_update"
    assert "Traceback" not in err and "Broken pipe" not in err


# --- a round whose turns fail ----------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider().running() as server:
        yield server


def against(api_base: str) -> dict[str, str]:
    """The environment of a run against an OpenAI-compatible server, with quick retries and
    no pause between the pieces of a reply asked for again without streaming."""
    return {
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "PSYCHE_API_BASE": api_base,
        "PSYCHE_RETRY_ATTEMPTS": "2",
        "PSYCHE_RETRY_BASE": "0.01",
        "PSYCHE_RETRY_CAP": "0.02",
        "PSYCHE_SIMULATED_DELAY": "0",
    }


@pytest.mark.parametrize("json_view", [False, True])
def test_a_round_whose_turns_all_fail_exits_1_with_one_line(run: Run, json_view: bool) -> None:
    # A port with nothing listening: bound, never listened on, so nobody else can take it.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{unused.getsockname()[1]}/v1"
        view = ["--json"] if json_view else []
        result = run("run", *view, "--model", "openai/gpt-4o-mini", "hi", **against(base))
    assert result.returncode == 1, result.stderr
    # Ten attempts by five turns failed the same way: said once, in one line.
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("psyche-sse: error: 5 of 5 turns failed")
    assert line.count("InternalServerError") == 1 and "Traceback" not in line
    if json_view:
        events = [json.loads(x) for x in result.stdout.splitlines()]
        [end] = [e for e in events if e["type"] == "round_complete"]
        assert end["status"] == "error" and events[-1]["type"] == "conversation_state"
    else:
        assert all(
            f"[{name} is experiencing technical difficulties]" in result.stdout
            for name in AGENT_IDS
        )


def test_each_distinct_error_is_named_once_with_its_count(run: Run, fake: FakeProvider) -> None:
    # Shadow's key is refused (no retry); Persona's and Ego's replies end after three words;
    # Anima/Animus's and Self's streams end before a word, and they are asked again without
    # streaming.
    fake.behave(fail=(401,), clean_cut=(3, 0, 0, 3))
    result = run("run", "--model", "openai/gpt-4o-mini", "hi", **against(fake.openai_base))
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("psyche-sse: error: 3 of 5 turns failed: ")
    assert line.count("AuthenticationError") == 1 and line.count("IncompleteStream") == 1
    assert "(IncompleteStream) ×2" in line
    assert "[Persona's reply was cut off by the provider]" in result.stdout


def test_a_round_that_succeeds_against_a_provider_exits_0(run: Run, fake: FakeProvider) -> None:
    fake.behave()
    result = run("run", "--model", "openai/gpt-4o-mini", "hi", **against(fake.openai_base))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout.count(" · native · ") == 5


def test_a_run_of_rounds_with_a_stimulus(run: Run) -> None:
    result = run(
        "run",
        "--json",
        "--rounds",
        "2",
        "--stimulus",
        "2:She texted: we need to talk",
        "My sister stopped calling me",
        PSYCHE_OFFLINE_TPS="0",
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    starts = [e for e in events if e["type"] == "round_started"]
    [injected] = [e for e in events if e["type"] == "stimulus_injected"]
    assert injected["round"] == 2 and injected["round_id"] == starts[1]["round_id"]
    assert starts[1]["situation"].startswith("She texted: we need to talk\n\n")
    assert [e["round"] for e in events if e["type"] == "conversation_state"] == [1, 2]
    text = run(
        "run", "--rounds", "2", "--stimulus", "2:She called", "Hi", PSYCHE_OFFLINE_TPS="0"
    ).stdout
    assert "Stimulus for round 2: She called" in text and text.count("State: conflict") == 2
