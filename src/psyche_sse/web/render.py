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
from ..events import Event, EventType, encode_sse
from ..llm.models import is_offline
from ..store import Transcript as StoredTranscript
from .markdown import MarkdownRenderer
from .transcript import Round, Transcript, Turn

HTML_FORMAT = "html"

_UNKNOWN_COLOUR = "#7f8c8d"
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
    colour: str
    slug: str
    initial: str

    @classmethod
    def of(cls, agent_id: str) -> AgentLook:
        archetype: Archetype | None = BY_ID.get(agent_id)
        if archetype is None:
            slug = "".join(ch if ch.isalnum() else "-" for ch in agent_id.lower())
            return cls(agent_id, _UNKNOWN_COLOUR, slug, agent_id[:1].upper() or "?")
        return cls(agent_id, archetype.colour, archetype.slug, agent_id[:1])


def _seconds(ms: object) -> str | None:
    if not isinstance(ms, int | float):
        return None
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{int(ms)} ms"


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
    """Renders pages and event fragments with the package's templates."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
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

    def round_end(self, round_: Round) -> Markup:
        return self.template("_round_end.html", round=round_, summary=_round_summary(round_))

    def turn(self, session_id: str, turn: Turn) -> Markup:
        agent = AgentLook.of(turn.agent_id)
        if turn.complete is None:
            return self.template(
                "_turn_live.html", turn=turn, agent=agent, bar=self.bar(turn.turn_id, turn.progress)
            )
        return self.template("_turn_final.html", **self._final_view(turn, agent))

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
    ) -> Markup:
        return self.template(
            "_composer.html",
            session_id=session_id,
            running=running,
            situation=situation,
            error=error,
            autofocus=autofocus,
        )

    def status(self, session_id: str | None, transcript: Transcript | None) -> Markup:
        """The status line's content for the state a transcript is in."""
        round_ = transcript.last_round if transcript else None
        if round_ is None:
            return self._status(session_id, "Describe a situation; the council will answer.")
        turn = round_.current_turn
        if turn is not None:
            return self._status(session_id, turn=turn)
        if round_.complete is not None:
            return self._status(session_id, _round_summary(round_))
        if round_.turns:
            return self._status(session_id, f"{round_.turns[-1].agent_id}: done")
        return self._status(session_id, f"Round {round_.index}: starting…")

    def sessionbar(self, session_id: str | None, title: str = "") -> Markup:
        """The session's title and what can be done with it (empty for a new session)."""
        return self.template("_sessionbar.html", session_id=session_id, title=title)

    def history(self, session_id: str, transcript: Transcript, running: bool) -> Markup:
        """Swaps that replace a page's whole conversation, status line and form."""
        rounds = Markup("").join(self.round_(session_id, r) for r in transcript.rounds)
        return (
            partial("#rounds", "innerHTML", rounds)
            + partial("#composer", "outerHTML", self.composer(session_id, running=running))
            + partial("#status", "innerHTML", self.status(session_id, transcript))
        )

    def _status(self, session_id: str | None, text: str = "", turn: Turn | None = None) -> Markup:
        agent = AgentLook.of(turn.agent_id) if turn else None
        return self.template(
            "_status.html", session_id=session_id, text=text, turn=turn, agent=agent
        )

    def _final_view(self, turn: Turn, agent: AgentLook) -> dict[str, Any]:
        data = turn.complete or {}
        meta: dict[str, Any] = data.get("metadata") or {}
        sentiment: dict[str, Any] = data.get("sentiment") or {}
        label = str(sentiment.get("label", "neutral"))
        score = float(sentiment.get("score", 0.0) or 0.0)
        model = str(meta.get("model") or turn.started.get("metadata", {}).get("model") or "")
        facts = [
            "offline demo model" if model and is_offline(model) else model,
            f"{meta['streaming']} streaming" if meta.get("streaming") else "",
        ]
        first = _seconds(meta.get("first_token_ms"))
        if first:
            facts.append(f"first token {first}")
        total = _seconds(meta.get("duration_ms"))
        if total:
            facts.append(f"total {total}")
        usage = meta.get("usage") or {}
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if isinstance(tokens, int) and tokens:
            facts.append(f"{tokens} tokens")
        status = str(meta.get("status", "ok"))
        return {
            "turn": turn,
            "agent": agent,
            "status": status,
            "body": self.markdown(str(data.get("final_content", ""))),
            "error": str(meta.get("error") or "") if status == "error" else "",
            "error_class": str(meta.get("error_class") or ""),
            "sentiment_class": label if label in _SENTIMENT_LABELS else "neutral",
            "sentiment_text": label.replace("_", " "),
            "score": _signed(score),
            "facts": [f for f in facts if f],
        }

    # --- the browser stream ----------------------------------------------------------------

    def event_html(self, event: Event) -> Markup:
        """The stream message for one event: the swaps that bring a page up to date."""
        data = event.data
        sid = str(data.get("session_id", ""))
        kind = event.type
        if kind is EventType.AGENT_PROCESSING_UPDATE:
            tid = event.turn_id or ""
            return partial(
                f"#turn-{tid}-text", "beforeend", str(data["partial_content"])
            ) + partial(
                f"#turn-{tid}-bar", "outerHTML", self.bar(tid, float(data.get("progress", 0.0)))
            )
        if kind is EventType.SESSION_HISTORY:
            # The stream could not replay to this page (a server restart since it loaded,
            # say): the whole conversation again, as stored.
            history = Transcript.from_store(StoredTranscript.from_dict(data["transcript"]))
            return self.history(sid, history, running=history.running)
        transcript = Transcript(sid)
        if kind is EventType.ROUND_STARTED:
            transcript.apply(event)
            round_ = transcript.rounds[0]
            return (
                partial("#rounds", "beforeend", self.round_(sid, round_))
                + partial("#composer", "outerHTML", self.composer(sid, running=True))
                + partial("#status", "innerHTML", self.status(sid, transcript))
            )
        # The rest concern one round: fold the event into a one-round transcript.
        round_ = Round(str(data.get("round_id", "")), 0, "")
        transcript.rounds.append(round_)
        if kind is EventType.AGENT_PROCESSING_STARTED:
            transcript.apply(event)
            turn = round_.turns[-1]
            return partial(
                f"#round-{round_.round_id}-turns", "beforeend", self.turn(sid, turn)
            ) + partial("#status", "innerHTML", self.status(sid, transcript))
        if kind is EventType.AGENT_PROCESSING_COMPLETE:
            turn = Turn(event.turn_id or "", round_.round_id, str(data["agent_id"]), {})
            turn.complete = data
            return partial(f"#turn-{turn.turn_id}", "outerHTML", self.turn(sid, turn)) + partial(
                "#status", "innerHTML", self._status(sid, f"{turn.agent_id}: done")
            )
        if kind is EventType.ROUND_COMPLETE:
            round_.complete = data
            return (
                partial(f"#round-{round_.round_id}-end", "outerHTML", self.round_end(round_))
                + partial(
                    "#composer", "outerHTML", self.composer(sid, running=False, autofocus=True)
                )
                + partial("#status", "innerHTML", self._status(sid, _round_summary(round_)))
            )
        return Markup("")

    def encode_event(self, event: Event) -> bytes:
        return encode_sse(str(self.event_html(event)), id=event.id)


def _round_summary(round_: Round) -> str:
    # Not numbered: round_complete does not carry the round's index, and the stream and a
    # page rendered afterwards must say the same.
    data = round_.complete
    if data is None:
        return "Round in progress…"
    status = data.get("status")
    if status == "cancelled":
        return "Round stopped."
    if status == "interrupted":
        return "Round interrupted: the server stopped during it."
    took = _seconds(data.get("duration_ms"))
    suffix = f" in {took}" if took else ""
    if status == "error":
        return f"Round finished with errors{suffix}."
    return f"Round complete{suffix}."
