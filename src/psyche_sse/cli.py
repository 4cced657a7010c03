"""The ``psyche-sse`` command: ``run`` streams a round to the terminal, ``serve`` the web app.

Heavy imports (LiteLLM, the web stack) happen inside the commands, so ``--help`` is quick.
Exit codes: 0 done, 1 a turn failed, 2 bad input or set-up, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .bus import EventBus
    from .config import Settings
    from .events import Event

PROG = "psyche-sse"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad input or set-up: printed as one line, exit code 2."""


class _Help(argparse.HelpFormatter):
    """``%(setting)s`` in a help text is the default of the setting the option sets: read
    from :class:`~psyche_sse.config.Settings` only when help is shown."""

    def _expand_help(self, action: argparse.Action) -> str:
        if "%(setting)" in (action.help or ""):
            from .config import Settings

            field = Settings.model_fields[action.dest]
            text = str(action.help).replace("%(setting)s", str(field.default))
            return text % {}
        return super()._expand_help(action)


def _bounds(name: str) -> tuple[int, int]:
    """The least and greatest values the setting ``name`` takes."""
    import annotated_types

    from .config import Settings

    low, high = -(2**63), 2**63
    for rule in Settings.model_fields[name].metadata:
        if isinstance(rule, annotated_types.Ge):
            low = int(rule.ge)  # type: ignore[call-overload]
        elif isinstance(rule, annotated_types.Le):
            high = int(rule.le)  # type: ignore[call-overload]
    return low, high


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A council of five Jungian archetypes answers a situation, streamed live.",
        formatter_class=_Help,
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="stream a round of the council to the terminal",
        description="Stream the council's answer to SITUATION.",
        formatter_class=_Help,
    )
    run.add_argument("situation", help="the situation, in your own words")
    run.add_argument(
        "--rounds",
        type=int,
        default=None,
        metavar="N",
        help="how many rounds to run (default %(setting)s)",
    )
    run.add_argument(
        "--model",
        default=None,
        metavar="M",
        help="LiteLLM model for every agent (default %(setting)s)",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="S",
        help="seed, for repeatable replies from models that take one",
    )
    run.add_argument(
        "--stimulus",
        action="append",
        default=[],
        metavar="ROUND:TEXT",
        help="a development that opens round ROUND of the run (repeatable)",
    )
    run.add_argument(
        "--json", action="store_true", help="print one JSON event per line instead of the text"
    )

    serve = commands.add_parser(
        "serve",
        help="serve the web app and the SSE API",
        description="Serve the web app and the SSE API.",
        formatter_class=_Help,
    )
    serve.add_argument("--host", default=None, help="address to bind (default %(setting)s)")
    serve.add_argument("--port", type=int, default=None, help="port (default %(setting)s)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes serving the port; more than one needs PSYCHE_REDIS_URL",
    )
    serve.add_argument(
        "--role",
        choices=("both", "generate", "deliver"),
        default=None,
        help="with PSYCHE_REDIS_URL: run rounds and serve viewers (both), only run rounds "
        "(generate), or only serve, handing rounds to the generating workers (deliver)",
    )
    serve.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=None,
        help="serve a non-loopback address with no user created: anyone who can reach it "
        "reads and deletes every session",
    )
    _account_commands(commands)

    doctor = commands.add_parser(
        "doctor",
        help="check that a deployment streams live, through whatever proxy is in front",
        description="Check a running deployment: reach /healthz, start one short round (five "
        "turns on its models), and compare when its events arrive with when they were sent. "
        "Exit 0: live; 1: something between buffers the stream; 2: unreachable or refused.",
    )
    doctor.add_argument("url", help="where the service answers, such as https://psyche.example.com")
    doctor.add_argument("--token", default=None, help="an API token, sent as Authorization: Bearer")
    return parser


def _account_commands(commands: Any) -> None:
    user = commands.add_parser(
        "user",
        help="manage the accounts that sign in (the first one is an admin)",
        description="Manage the accounts. Once one exists, the server asks everyone to sign in.",
    )
    users = user.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = users.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="an admin sees every session")
    _password_option(add)
    users.add_parser("list", help="list the users")
    remove = users.add_parser(
        "remove", help="remove a user and its tokens (its sessions stay, for admins to see)"
    )
    remove.add_argument("name")
    passwd = users.add_parser("passwd", help="set a user's password (signs it out everywhere)")
    passwd.add_argument("name")
    _password_option(passwd)

    token = commands.add_parser(
        "token",
        help="manage API tokens (Authorization: Bearer ...)",
        description="Manage the API tokens of the users, for scripts and curl.",
    )
    tokens = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = tokens.add_parser("create", help="make a token and print it, once")
    create.add_argument("name", help="what the token is for")
    create.add_argument("--user", required=True, help="the user the token acts as")
    listing = tokens.add_parser("list", help="list the tokens (never the tokens themselves)")
    listing.add_argument("--user", default=None, help="only this user's")
    revoke = tokens.add_parser("revoke", help="revoke a token: it stops working at once")
    revoke.add_argument("id", type=int, help="the token's id (see token list)")


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (for scripts)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    from .store import StoreError

    try:
        if args.command == "run":
            return _run(args)
        if args.command == "serve":
            return _serve(args)
        if args.command in ("user", "token"):
            from .accounts_cli import accounts_command

            return accounts_command(args, _settings())
        if args.command == "doctor":
            return _doctor(args)
    except (UsageError, StoreError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return EXIT_USAGE  # pragma: no cover - argparse rejects unknown commands


def _configure_logging(verbosity: int) -> None:
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    logging.basicConfig(
        level=level, format=f"{PROG}: %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _settings(**overrides: Any) -> Settings:
    from .config import load_settings
    from .errors import ConfigError
    from .logs import LogIds, use_format

    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    # The start-up's lines in the chosen format too (the engine's ids come with the engine).
    use_format(settings.log_format, LogIds())
    return settings


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(
        host=args.host, port=args.port, insecure_no_auth=args.insecure_no_auth, role=args.role
    )
    from .web.server import serve
    from .web.workers import MAX_WORKERS, supervise

    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be from 1 to {MAX_WORKERS}")
    if args.workers > 1 and settings.redis_url is None:
        raise UsageError(
            "--workers needs PSYCHE_REDIS_URL: the workers share their events through Redis"
        )
    if settings.role != "both" and settings.redis_url is None:
        raise UsageError("--role needs PSYCHE_REDIS_URL: the roles meet through Redis")

    # Fail here with one line rather than inside uvicorn's start-up with a traceback, or
    # later in every turn. (Only a provider's model costs LiteLLM's import here.)
    _check_models(settings)
    _check_store(settings)
    from .accounts_cli import check_exposure
    from .errors import InputError

    try:
        check_exposure(settings)
    except InputError as exc:
        raise UsageError(str(exc)) from exc

    if args.workers > 1:
        passed = [
            *(["--host", args.host] if args.host else []),
            *(["--role", args.role] if args.role else []),
            *(["--insecure-no-auth"] if args.insecure_no_auth else []),
        ]
        return supervise(settings, args.workers, passed)
    serve(settings, fd=args.fd)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import Unreachable, doctor

    try:
        return doctor(args.url, token=args.token, out=sys.stdout)
    except Unreachable as exc:
        raise UsageError(str(exc)) from exc


def _run(args: argparse.Namespace) -> int:
    low, high = _bounds("rounds")
    if args.rounds is not None and not low <= args.rounds <= high:
        raise UsageError(f"--rounds must be between {low} and {high}")
    settings = _settings(model=args.model, rounds=args.rounds)

    from .council import clean_situation
    from .errors import InputError
    from .llm import preload

    try:
        clean_situation(args.situation, settings.max_situation_chars)
    except InputError as exc:
        raise UsageError(str(exc)) from exc
    scheduled = _stimuli(args.stimulus, settings.rounds)
    _check_models(settings)
    _check_store(settings)
    if not args.verbose:
        # The run names what failed itself, at the end, each distinct error once; the
        # warnings behind it (one per attempt, one per turn) are there with -v.
        for name in ("psyche_sse.council", "psyche_sse.llm.client"):
            logging.getLogger(name).setLevel(logging.ERROR)
    # Import LiteLLM now rather than inside the first turn, where it would hold up the loop.
    preload()

    import anyio

    from .engine.rounds import afford
    from .errors import OverBudget

    try:
        anyio.run(afford, settings, args.situation)
    except OverBudget as exc:
        raise UsageError(str(exc)) from exc
    view = JsonView(sys.stdout) if args.json else TextView(sys.stdout)
    try:
        stopped = anyio.run(_run_async, settings, args.situation, args.seed, view, scheduled)
    except BaseExceptionGroup as group:
        # The view's task raises a closed pipe inside the round's task group.
        if group.subgroup(BrokenPipeError) is not None:
            raise BrokenPipeError from None
        raise
    if stopped:
        return EXIT_INTERRUPTED
    if view.failures.reason is not None:
        print(f"{PROG}: stopped: {view.failures.reason}", file=sys.stderr)
        return EXIT_FAILED
    summary = view.failures.summary()
    if summary is not None:
        print(f"{PROG}: error: {summary}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _stimuli(specs: list[str], rounds: int) -> dict[int, list[str]]:
    """``--stimulus ROUND:TEXT`` options, by round; a :class:`UsageError` for a bad one."""
    from .council import clean_stimulus
    from .errors import InputError

    out: dict[int, list[str]] = {}
    for spec in specs:
        where, sep, text = spec.partition(":")
        if not sep or not where.strip().isdigit():
            raise UsageError(
                f"--stimulus takes ROUND:TEXT, such as 2:She called back (not {spec!r})"
            )
        at = int(where)
        if not 1 <= at <= rounds:
            raise UsageError(f"--stimulus {at}: the run has rounds 1 to {rounds} (see --rounds)")
        try:
            out.setdefault(at, []).append(clean_stimulus(text))
        except InputError as exc:
            raise UsageError(f"--stimulus {at}: {exc}") from exc
    return out


def _check_models(settings: Settings) -> None:
    """Every agent's model can be routed, with its key set; else a :class:`UsageError`."""
    from .llm import ModelUnavailable, check_model

    try:
        for model in sorted({settings.model_for(a) for a in _agent_ids()}):
            check_model(model, settings.api_base)
    except ModelUnavailable as exc:
        raise UsageError(str(exc)) from exc


def _check_store(settings: Settings) -> None:
    """The database opens (a :class:`~psyche_sse.store.StoreError` otherwise)."""
    from .store import Store

    Store.open(settings.database()).close()


def _agent_ids() -> list[str]:
    from .archetypes import ARCHETYPES

    return [a.agent_id for a in ARCHETYPES]


async def _run_async(
    settings: Settings,
    situation: str,
    seed: int | None,
    view: View,
    scheduled: dict[int, list[str]],
) -> bool:
    import anyio

    from .engine import Engine
    from .logs import LogIds, use_format

    log_ids = LogIds()
    use_format(settings.log_format, log_ids)
    async with Engine(settings, log_ids=log_ids) as engine:
        session, round_id, text = engine.rounds.prepare(situation)
        stopped = False

        async def watch_signals(scope: anyio.CancelScope) -> None:
            nonlocal stopped
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    if stopped:  # a second Ctrl-C: stop waiting for the turn to wind down
                        scope.cancel()
                        return
                    stopped = True
                    view.notice("stopping…")
                    engine.rounds.stop_here(session)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_signals, tg.cancel_scope)
            tg.start_soon(view.follow, engine.bus, session.id)
            await engine.rounds.run(
                session, round_id, text, rounds=settings.rounds, seed=seed, scheduled=scheduled
            )
            await view.done.wait()
            tg.cancel_scope.cancel()
        return stopped


class Failures:
    """What failed in a run: its turns, and each distinct error once, with its count."""

    def __init__(self) -> None:
        self.turns = 0
        self.failed = 0
        self.rounds = 0
        self.rounds_failed = 0
        self.errors: Counter[str] = Counter()
        self.reason: str | None = None  # why the run stopped early (its budget)

    def add(self, event: Event) -> None:
        from .events import AgentComplete, RoundComplete
        from .transcript import Status

        payload = event.payload
        if isinstance(payload, AgentComplete):
            meta = payload.metadata
            self.turns += 1
            if meta.status is Status.ERROR:
                self.failed += 1
                message = meta.error or "failed"
                if meta.error_class and f"({meta.error_class})" not in message:
                    message += f" ({meta.error_class})"
                self.errors[message] += 1
        elif isinstance(payload, RoundComplete):
            self.rounds += 1
            self.reason = payload.reason or self.reason
            if payload.status is Status.ERROR:
                self.rounds_failed += 1

    def summary(self) -> str | None:
        """One line, when a round failed; None when none did."""
        if not self.rounds_failed:
            return None
        where = f" in {self.rounds_failed} of {self.rounds} rounds" if self.rounds > 1 else ""
        several = len(self.errors) > 1
        errors = "; ".join(
            f"{message} ×{count}" if several and count > 1 else message
            for message, count in self.errors.most_common()
        )
        return f"{self.failed} of {self.turns} turns failed{where}: {errors}"


class View:
    def __init__(self, out: TextIO) -> None:
        import anyio

        self.out = out
        self.done = anyio.Event()
        self.failures = Failures()

    async def follow(self, bus: EventBus, session_id: str) -> None:
        """Show the run's events; done after the state (a round's last event) of the round
        that ends the run (its last, or a stopped one)."""
        from .events import ConversationState, RoundComplete

        ending = False
        try:
            async for batch in bus.subscribe(session_id):
                for event in batch:
                    self.failures.add(event)
                    self.show(event)
                    payload = event.payload
                    if isinstance(payload, RoundComplete):
                        ending = payload.ends_run
                    elif isinstance(payload, ConversationState) and ending:
                        return
        finally:
            self.finish()
            self.done.set()

    def show(self, event: Event) -> None:
        raise NotImplementedError

    def notice(self, text: str) -> None:
        print(f"\n{PROG}: {text}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        self.out.flush()


class JsonView(View):
    def show(self, event: Event) -> None:
        self.out.write(event.json_line() + "\n")
        self.out.flush()


class TextView(View):
    """Each agent's text live under its name, in its colour, with a spinner until it speaks.

    Every line fits the terminal's width (``COLUMNS``, else the terminal's, else 80), with
    words kept whole as they stream in (:mod:`psyche_sse.terminal`)."""

    SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    INDENT = "  "  # a reply and its facts, under the agent's name

    def __init__(self, out: TextIO) -> None:
        from .terminal import StreamWrapper, terminal_width

        super().__init__(out)
        self.tty = out.isatty()
        self.colour = self.tty and "NO_COLOR" not in os.environ
        self.waiting: str | None = None
        self.streamed = ""  # the text of the current turn so far
        self.width = terminal_width()
        self.reply = StreamWrapper(self.width, self.INDENT)
        self._spin = 0

    def _paint(
        self, text: str, hex_colour: str | None = None, *, bold: bool = False, dim: bool = False
    ) -> str:
        if not self.colour:
            return text
        codes = []
        if bold:
            codes.append("1")
        if dim:
            codes.append("2")
        if hex_colour:
            r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
            codes.append(f"38;2;{r};{g};{b}")
        return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"

    async def follow(self, bus: EventBus, session_id: str) -> None:
        import anyio

        async def spin() -> None:
            while True:
                await anyio.sleep(0.08)
                if self.waiting and self.tty:
                    self._spin = (self._spin + 1) % len(self.SPINNER)
                    self.out.write(f"\r{self.SPINNER[self._spin]} {self.waiting}")
                    self.out.flush()

        async with anyio.create_task_group() as tg:
            tg.start_soon(spin)
            await super().follow(bus, session_id)
            tg.cancel_scope.cancel()

    def _clear_spinner(self) -> None:
        if self.waiting is not None:
            self.waiting = None
            if self.tty:
                self.out.write("\r\x1b[2K")

    def show(self, event: Event) -> None:
        from .archetypes import BY_ID
        from .events import (
            AgentComplete,
            AgentStarted,
            AgentUpdate,
            ConversationState,
            EmergencyStatus,
            RoundComplete,
            RoundStarted,
            StimulusInjected,
        )
        from .terminal import StreamWrapper, printable, terminal_width
        from .transcript import Status, cost_text, seconds

        payload = event.payload
        if isinstance(payload, RoundStarted):
            self._lines(
                self._paint(f"Round {payload.index}", bold=True)
                + " · "
                + self._paint(printable(payload.situation), dim=True)
            )
            self.out.write("\n")
        elif isinstance(payload, AgentStarted):
            colour = BY_ID[payload.agent_id].colour
            self.streamed = ""
            self.width = terminal_width()  # the terminal may have been resized
            self.reply = StreamWrapper(self.width, self.INDENT)
            self.waiting = self._paint(f"{payload.agent_id} is thinking…", colour)
            if self.tty:
                self.out.write(f"{self.SPINNER[0]} {self.waiting}")
        elif isinstance(payload, AgentUpdate):
            if self.waiting is not None:
                self._clear_spinner()
                self._header(payload.agent_id)
            self.out.write(self.reply.feed(payload.partial_content))
            self.streamed += payload.partial_content
        elif isinstance(payload, AgentComplete):
            meta = payload.metadata
            final = payload.final_content
            if self.waiting is not None:
                self._clear_spinner()
                self._header(payload.agent_id)
                self.out.write(self.reply.feed(final))
            elif final.startswith(self.streamed):
                # What the end of a turn adds to its text: a line saying it was cut off.
                self.out.write(self.reply.feed(final[len(self.streamed) :]))
            self.out.write(self.reply.finish() + "\n")
            sentiment = payload.sentiment
            facts = [
                f"{sentiment.label} ({sentiment.score:+.2f})",
                meta.streaming or "-",
                seconds(meta.duration_ms) or "",
            ]
            line = " · ".join(facts)
            if meta.status is not Status.OK:
                line += f" · {meta.status}"
                if meta.error:
                    line += f": {printable(meta.error)}"
            self._lines(self._paint(line, dim=True), self.INDENT)
            self.out.write("\n")
        elif isinstance(payload, RoundComplete):
            took = seconds(payload.duration_ms)
            cost = "" if payload.cost_usd is None else f", {cost_text(payload.cost_usd)}"
            self._lines(self._paint(f"Round complete ({payload.status}, {took}{cost})", dim=True))
        elif isinstance(payload, ConversationState):
            m = payload.metrics
            line = (
                f"State: conflict {m.conflict:.2f} · engagement {m.engagement:.2f} · "
                f"diversity {m.diversity:.2f} · repetition {m.repetition:.2f} · "
                f"intensity {m.intensity:.2f} · stagnation {m.stagnation:.2f}"
            )
            self._lines(self._paint(line, dim=True))
            for guide in payload.guidance:
                self._lines(self._paint(f"Guidance: {guide}", dim=True))
            self.out.write("\n")
        elif isinstance(payload, EmergencyStatus):
            mode = "on: emergency paths open" if payload.active else "off: emergency paths closed"
            self._lines(self._paint(f"Emergency mode {mode} ({payload.reason})", bold=True))
        elif isinstance(payload, StimulusInjected):
            self._lines(
                self._paint(f"Stimulus for round {payload.round}: ", bold=True)
                + printable(payload.text)
            )
            self.out.write("\n")
        self.out.flush()

    def _lines(self, text: str, indent: str = "") -> None:
        """A whole text (colour codes allowed), wrapped to the width, and a line break."""
        from .terminal import wrap

        self.out.write(wrap(text, self.width, indent) + "\n")

    def _header(self, agent_id: str) -> None:
        from .archetypes import BY_ID

        self.out.write(self._paint(agent_id, BY_ID[agent_id].colour, bold=True) + "\n")

    def finish(self) -> None:
        self._clear_spinner()
        self.out.flush()
