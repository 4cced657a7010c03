"""HTML: the pages, and each event as a fragment the page's htmx swaps in.

A browser stream message is a handful of ``<hx-partial>`` elements, each naming its target
element and swap style, so one message can append a delta to a card's text and move its
progress bar. Every string from a model or a person goes through Jinja's autoescaping or
:func:`markupsafe.escape`; final replies go through :class:`MarkdownRenderer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2
from markupsafe import Markup, escape

from .. import __version__
from ..archetypes import ARCHETYPES, BY_ID, Archetype
from ..config import Settings
from ..events import (
    AgentComplete,
    AgentStarted,
    AgentUpdate,
    ConversationState,
    EmergencyStatus,
    Event,
    NetworkUpdate,
    RoundComplete,
    RoundStarted,
    SessionHistory,
    StimulusInjected,
    encode_sse,
)
from ..llm.models import is_offline
from ..pictures import network_picture, picture_environment, sentiment_chart, state_chart
from ..transcript import (
    Round,
    Status,
    Transcript,
    Turn,
    cost_text,
    seconds,
    turn_facts,
    usd,
)
from .markdown import MarkdownRenderer

HTML_FORMAT = "html"

_SENTIMENT_LABELS = frozenset({"very_negative", "negative", "neutral", "positive", "very_positive"})


def static_url(path: str) -> str:
    """A static file's URL; the version query makes browsers fetch it anew after an upgrade."""
    return f"/static/{path}?v={__version__}"


def partial(target: str, swap: str, html: str | Markup) -> Markup:
    """One swap of a stream message: ``html`` into the element ``target`` with ``swap``."""
    return Markup('<hx-partial hx-target="{}" hx-swap="{}">{}</hx-partial>').format(
        target, swap, Markup(html) if isinstance(html, Markup) else escape(html)
    )


@dataclass(frozen=True)
class AgentLook:
    agent_id: str
    slug: str
    initial: str

    @classmethod
    def of(cls, agent_id: str) -> AgentLook:
        archetype: Archetype | None = BY_ID.get(agent_id)
        if archetype is None:
            slug = "".join(ch if ch.isalnum() else "-" for ch in agent_id.lower())
            return cls(agent_id, slug, agent_id[:1].upper() or "?")
        return cls(agent_id, archetype.slug, agent_id[:1])


def _signed(score: float) -> str:
    return f"{score:+.2f}".replace("-", "\u2212")


def when(timestamp: object) -> str:
    """An ISO 8601 time as people read it, in UTC: ``25 Nov 2026, 17:14 UTC``."""
    try:
        moment = datetime.fromisoformat(str(timestamp))
    except ValueError:
        return str(timestamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"


class Renderer:
    """Renders pages and event fragments with the package's templates.

    ``shared``: for the read-only page of a shared link, with no controls (no form, no Stop
    or Skip), whose pictures are fetched from the shared page's own address.
    """

    def __init__(self, settings: Settings, *, shared: bool = False) -> None:
        self.settings = settings
        self.shared = shared
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("psyche_sse", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        self.markdown = MarkdownRenderer()
        self.env.globals.update(
            offline=self.offline,
            archetypes=ARCHETYPES,
            static_url=static_url,
        )
        self.env.filters["when"] = when
        self.pictures_env = picture_environment()

    @property
    def offline(self) -> bool:
        """Whether any agent speaks through the embedded offline demo model."""
        return any(is_offline(self.settings.model_for(a.agent_id)) for a in ARCHETYPES)

    def template(self, name: str, **context: Any) -> Markup:
        return Markup(self.env.get_template(name).render(**context))

    # --- pieces shared by the page and the stream ---------------------------------------

    def round_(self, session_id: str, round_: Round) -> Markup:
        turns = Markup("").join(self.turn(session_id, t) for t in round_.turns)
        return self.template("_round.html", round=round_, turns=turns, end=self.round_end(round_))

    def round_end(self, round_: Round, cost: float | None = None) -> Markup:
        """The line under a round: how it ended, and what it cost (``cost``, or its
        turns')."""
        cost = round_.cost_usd if cost is None else cost
        return self.template(
            "_round_end.html",
            round=round_,
            summary=_round_summary(round_),
            cost="" if cost is None else cost_text(cost),
        )

    def turn(self, session_id: str, turn: Turn) -> Markup:
        """The turn's card, after what it was given: whom it heard and the guidance."""
        return self.turn_context(turn) + self.card(turn)

    def card(self, turn: Turn) -> Markup:
        agent = AgentLook.of(turn.agent_id)
        if turn.running:
            return self.template(
                "_turn_live.html", turn=turn, agent=agent, bar=self.bar(turn.id, turn.progress)
            )
        return self.template("_turn_final.html", **self._final_view(turn, agent))

    def turn_context(self, turn: Turn) -> Markup:
        return self.template("_turn_context.html", turn=turn, agent=AgentLook.of(turn.agent_id))

    def pictures(self, transcript: Transcript | None) -> Markup:
        """The session's three pictures, in their section."""
        empty = Transcript(id="")
        shown = transcript or empty
        return self.template(
            "_pictures.html",
            sentiment=sentiment_chart(shown, env=self.pictures_env),
            state=state_chart(shown, env=self.pictures_env),
            network=network_picture(shown, env=self.pictures_env),
        )

    def emergency(self, transcript: Transcript | None) -> Markup:
        """The emergency banner for the state a transcript is in."""
        active = False
        for round_ in reversed(transcript.rounds if transcript else []):
            if round_.state is not None:
                active = round_.state.emergency
                break
        return self.template("_emergency.html", active=active, switched=None)

    def bar(self, turn_id: str, progress: float) -> Markup:
        percent = max(0.0, min(1.0, progress)) * 100
        return self.template("_bar.html", turn_id=turn_id, percent=f"{percent:.1f}")

    def composer(
        self,
        session_id: str | None,
        *,
        running: bool,
        situation: str = "",
        error: str = "",
        autofocus: bool = False,
        can_continue: bool = False,
    ) -> Markup:
        return self.template(
            "_composer.html",
            session_id=session_id,
            running=running,
            situation=situation,
            error=error,
            autofocus=autofocus,
            can_continue=can_continue,
        )

    def status(self, session_id: str | None, transcript: Transcript | None) -> Markup:
        """The status line's content for the state a transcript is in."""
        round_ = transcript.last_round if transcript else None
        if round_ is None:
            return self._status(session_id, "Describe a situation; the council will answer.")
        run = run_label(round_)
        turn = round_.current_turn
        if turn is not None:
            return self._status(session_id, run=run, turn=turn)
        if not round_.running:
            return self._status(session_id, _round_summary(round_), run=run)
        if round_.turns:
            return self._status(session_id, f"{round_.turns[-1].agent_id}: done", run=run)
        return self._status(session_id, "starting…", run=run)

    def sessionbar(
        self, session_id: str | None, title: str = "", spent: float | None = None
    ) -> Markup:
        """The session's title, what it cost, and what can be done with it (empty for a
        new session)."""
        return self.template(
            "_sessionbar.html", session_id=session_id, title=title, spent=self.spent(spent)
        )

    def spent(self, cost: float | None) -> str:
        """What a session cost so far, against its budget when it has one."""
        budget = self.settings.budget_usd
        if cost is None:
            return f"Budget {usd(budget)}" if budget else ""
        if budget:
            return f"Cost {usd(cost)} of {usd(budget)} budget"
        return f"Cost {cost_text(cost)}"

    def history(self, session_id: str, transcript: Transcript, running: bool) -> Markup:
        """Swaps that replace a page's whole conversation, status line, form and pictures."""
        rounds = Markup("").join(self.round_(session_id, r) for r in transcript.rounds)
        composer = self.composer(session_id, running=running, can_continue=bool(transcript.rounds))
        return (
            partial("#rounds", "innerHTML", rounds)
            + self._controls(partial("#composer", "outerHTML", composer))
            + partial("#status", "innerHTML", self.status(session_id, transcript))
            + partial("#emergency", "outerHTML", self.emergency(transcript))
            + partial("#pictures", "outerHTML", self.pictures(transcript))
        )

    def _status(
        self,
        session_id: str | None,
        text: str = "",
        turn: Turn | None = None,
        *,
        run: str = "",
    ) -> Markup:
        return self.template(
            "_status.html", run=run, turn_part=self._status_turn(session_id, text, turn)
        )

    def _status_turn(
        self, session_id: str | None, text: str = "", turn: Turn | None = None
    ) -> Markup:
        agent = AgentLook.of(turn.agent_id) if turn else None
        position = next(
            (i for i, a in enumerate(ARCHETYPES, 1) if turn and a.agent_id == turn.agent_id), 0
        )
        return self.template(
            "_status_turn.html",
            session_id=session_id,
            text=text,
            turn=turn,
            agent=agent,
            position=position,
            agents=len(ARCHETYPES),
            controls=not self.shared,
        )

    def _controls(self, swaps: Markup) -> Markup:
        """``swaps`` of the page's controls; none on a shared page, which has no controls."""
        return Markup("") if self.shared else swaps

    def pictures_url(self, session_id: str) -> str:
        """Where a page fetches the session's pictures; a shared page, from its own address
        (the link's token is in it, and in no event's HTML)."""
        return "?part=pictures" if self.shared else f"/s/{session_id}/pictures"

    def _final_view(self, turn: Turn, agent: AgentLook) -> dict[str, Any]:
        sentiment = turn.sentiment
        label = sentiment.label if sentiment else "neutral"
        model = turn.model or ""
        return {
            "turn": turn,
            "agent": agent,
            "status": turn.status.value,
            "body": self.markdown(turn.text),
            "error": (turn.error or "") if turn.status is Status.ERROR else "",
            "error_class": turn.error_class or "",
            "sentiment_class": label if label in _SENTIMENT_LABELS else "neutral",
            "sentiment_text": label.replace("_", " "),
            "score": _signed(sentiment.score if sentiment else 0.0),
            "facts": turn_facts(
                turn, model_name="offline demo model" if is_offline(model) else None
            ),
        }

    # --- the browser stream ----------------------------------------------------------------

    def event_html(self, event: Event) -> Markup:
        """The stream message for one event: the swaps that bring a page up to date."""
        payload = event.payload
        sid = payload.session_id
        if isinstance(payload, AgentUpdate):
            tid = payload.turn_id
            return partial(f"#turn-{tid}-text", "beforeend", payload.partial_content) + partial(
                f"#turn-{tid}-bar", "outerHTML", self.bar(tid, payload.progress)
            )
        if isinstance(payload, SessionHistory):
            # The stream could not replay to this page (a server restart since it loaded,
            # say): the whole conversation again, as stored.
            history = payload.transcript
            return self.history(sid, history, running=history.running)
        # The rest concern one round: fold the event into a one-round transcript.
        transcript = Transcript(id=sid)
        if isinstance(payload, RoundStarted):
            round_ = payload.apply(transcript)
            note = Markup("")
            if payload.stimulus:
                note = Markup("Round {} opened with: “{}”").format(payload.index, payload.stimulus)
            return (
                partial("#rounds", "beforeend", self.round_(sid, round_))
                + self._controls(
                    partial("#composer", "outerHTML", self.composer(sid, running=True))
                )
                + partial("#status", "innerHTML", self.status(sid, transcript))
                + partial("#stimulus-note", "innerHTML", note)
            )
        if isinstance(payload, NetworkUpdate):
            return Markup("")  # the network picture follows each round's state
        round_ = Round(id=payload.round_id or "", index=0, situation="", started="")
        transcript.rounds.append(round_)
        if isinstance(payload, AgentStarted):
            turn = payload.apply(transcript)
            assert turn is not None
            return partial(
                f"#round-{round_.id}-turns", "beforeend", self.turn(sid, turn)
            ) + partial("#status-turn", "innerHTML", self._status_turn(sid, turn=turn))
        if isinstance(payload, AgentComplete):
            turn = Turn(
                id=payload.turn_id,
                agent_id=payload.agent_id,
                agent_type=payload.metadata.agent_type,
                started="",
            )
            round_.turns.append(turn)
            payload.apply(transcript)
            return partial(f"#turn-{turn.id}", "outerHTML", self.card(turn)) + partial(
                "#status-turn", "innerHTML", self._status_turn(sid, f"{turn.agent_id}: done")
            )
        if isinstance(payload, RoundComplete):
            payload.apply(transcript)
            ended = payload.ends_run
            composer = self.composer(sid, running=not ended, autofocus=ended, can_continue=True)
            return (
                partial(
                    f"#round-{round_.id}-end", "outerHTML", self.round_end(round_, payload.cost_usd)
                )
                + self._controls(
                    partial("#session-cost", "innerHTML", self.spent(payload.session_cost_usd))
                    + partial("#composer", "outerHTML", composer)
                )
                + partial(
                    "#status",
                    "innerHTML",
                    self._status(sid, _round_summary(round_), run=run_label(round_)),
                )
            )
        if isinstance(payload, ConversationState):
            # The pictures as they stand after this round: fetched by the page (htmx loads
            # them), as an event's HTML is the same for every page and holds no session
            # state of its own.
            loader = Markup(
                '<div hx-get="{}" hx-trigger="load" hx-target="#pictures"'
                ' hx-swap="outerHTML"></div>'
            ).format(self.pictures_url(sid))
            return partial("#loaders", "innerHTML", loader)
        if isinstance(payload, EmergencyStatus):
            banner = self.template("_emergency.html", active=payload.active, switched=payload)
            return partial("#emergency", "outerHTML", banner)
        if isinstance(payload, StimulusInjected):
            note = Markup("Round {} will open with: “{}”").format(payload.round, payload.text)
            return partial("#stimulus-note", "innerHTML", note)
        return Markup("")

    def encode_event(self, event: Event) -> bytes:
        return encode_sse(str(self.event_html(event)), id=event.id)


def run_label(round_: Round) -> str:
    """ "Round 2 of 5" in a run of several rounds; "Round 3" (the session's count) alone."""
    if round_.run_rounds > 1:
        return f"Round {round_.run_index} of {round_.run_rounds}"
    return f"Round {round_.index}" if round_.index else ""


def _round_summary(round_: Round) -> str:
    # Not numbered: round_complete does not carry the round's index, and the stream and a
    # page rendered afterwards must say the same.
    status = round_.status
    if status is Status.RUNNING:
        return "Round in progress…"
    if status is Status.CANCELLED:
        return f"Round stopped: {round_.reason}." if round_.reason else "Round stopped."
    if status is Status.INTERRUPTED:
        return "Round interrupted: the server stopped during it."
    took = seconds(round_.duration_ms)
    suffix = f" in {took}" if took else ""
    if status is Status.ERROR:
        return f"Round finished with errors{suffix}."
    return f"Round complete{suffix}."
