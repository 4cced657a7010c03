"""A session's transcript as a file to download: JSON, Markdown or a standalone HTML page.

JSON is the lossless form (:func:`from_json` reads it back). Markdown and HTML are for people:
every text from a person or a model is escaped, and the HTML page carries its own CSS and no
script at all (its Content-Security-Policy forbids them too). They give times as people read
them ("30 November 2026, 14:05") in the time zone of the machine that makes the file (the
server's, ``TZ`` sets it), at the UTC offset of the session's start, named once at the top;
and each round opens with a summary: how it ended, its turns, time and cost, and the
conversation's state after it.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from types import MappingProxyType
from typing import Protocol

from .archetypes import BY_ID
from .links import neutralise_markdown_links
from .pictures import network_picture, sentiment_chart, state_chart
from .transcript import Round, Status, Transcript, Turn, cost_text, seconds, turn_facts

JSON_FORMAT = "psyche-sse/transcript"
JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class ExportFile:
    body: bytes
    media_type: str
    filename: str

    @property
    def content_disposition(self) -> str:
        return f'attachment; filename="{self.filename}"'


def export(transcript: Transcript, fmt: str, *, zone: tzinfo | None = None) -> ExportFile:
    """The transcript in ``fmt`` (one of :data:`FORMATS`), its times in ``zone`` (None: this
    machine's local time); ValueError for another format."""
    try:
        render, media_type, extension = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown export format {fmt!r} (use {', '.join(FORMATS)})") from None
    body = render(transcript, zone=zone).encode()
    return ExportFile(body, media_type, filename(transcript, extension))


def filename(transcript: Transcript, extension: str) -> str:
    """``psyche-<title-slug>-<id>.<extension>``: ASCII, safe in a header and on any disk."""
    ascii_title = unicodedata.normalize("NFKD", transcript.title).encode("ascii", "ignore")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.decode().lower()).strip("-")[:40].strip("-")
    safe_id = re.sub(r"[^A-Za-z0-9]+", "", transcript.id)[:32]
    return f"psyche-{slug or 'session'}-{safe_id or 'session'}.{extension}"


# --- JSON --------------------------------------------------------------------------------


def to_json(transcript: Transcript, *, zone: tzinfo | None = None) -> str:
    """The lossless form: times stay as recorded (ISO 8601, UTC); ``zone`` is not used."""
    data = transcript.to_dict()
    # The sums, for readers of the file; the turns' costs are what is read back.
    for rnd, plain_round in zip(transcript.rounds, data["rounds"], strict=True):
        plain_round["cost_usd"] = rnd.cost_usd
    document = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "cost_usd": transcript.cost_usd,
        **data,
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def from_json(text: str) -> Transcript:
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
        raise ValueError("not a psyche-sse transcript")
    return Transcript.from_dict(data)


# --- what people read: times, counts, a round's summary -----------------------------------


class _Times:
    """A session's times as people read them, all at one UTC offset: the one ``zone`` (None:
    this machine's local time) had when the session started, so that the offset named once
    at the top holds for every time in the file, even across a change to summer time."""

    def __init__(self, transcript: Transcript, zone: tzinfo | None) -> None:
        start = _instant(transcript.created) or datetime.now(UTC)
        self.zone = timezone(start.astimezone(zone).utcoffset() or timedelta(0))
        self.local = zone is None

    @property
    def offset(self) -> str:
        """``UTC+01:00``, ``UTC-05:30``, or ``UTC``."""
        minutes = int((self.zone.utcoffset(None) or timedelta(0)).total_seconds()) // 60
        if not minutes:
            return "UTC"
        sign = "+" if minutes > 0 else "-"
        return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    @property
    def note(self) -> str:
        return f"Times are in {self.offset}" + (", the server's time zone." if self.local else ".")

    def when(self, stamp: str | None, *, day_of: str | None = None) -> str:
        """``30 November 2026, 14:05``, or only ``14:05`` when it falls on the day of
        ``day_of``; ``unknown`` for no time."""
        instant = _instant(stamp)
        if instant is None:
            return "unknown"
        local = instant.astimezone(self.zone)
        same_day = _instant(day_of)
        if same_day is not None and same_day.astimezone(self.zone).date() == local.date():
            return f"{local:%H:%M}"
        return f"{local.day} {local:%B %Y, %H:%M}"


def _instant(stamp: str | None) -> datetime | None:
    """A recorded timestamp (ISO 8601, UTC) as a datetime; None for none or a bad one."""
    if not stamp:
        return None
    try:
        instant = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 round``, ``2 rounds``, ``0 rounds``."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


_ENDINGS = MappingProxyType(
    {
        Status.RUNNING: "Still running",
        Status.OK: "Finished",
        Status.ERROR: "Failed",
        Status.CANCELLED: "Stopped",
        Status.INTERRUPTED: "Interrupted (the server stopped during it)",
    }
)

_METRICS = ("conflict", "engagement", "diversity", "repetition", "intensity", "stagnation")


def _summary(rnd: Round, times: _Times, day_of: str) -> str:
    """The round in a line: how it ended, when it started, its turns, time and cost."""
    parts = [
        _ENDINGS[rnd.status] + (f": {rnd.reason}" if rnd.reason else ""),
        f"started {times.when(rnd.started, day_of=day_of)}",
        count(len(rnd.turns), "turn"),
    ]
    took = seconds(rnd.duration_ms)
    if took:
        parts.append(f"took {took}")
    if rnd.cost_usd is not None:
        parts.append(_cost(rnd.cost_usd))
    return " · ".join(parts)


def _cost(cost: float) -> str:
    """``cost $0.0021``, or ``free``."""
    return f"cost {cost_text(cost)}" if cost else cost_text(cost)


def _state_cells(rnd: Round) -> list[str] | None:
    """The state after the round: each metric, then emergency mode; None before it has one."""
    if rnd.state is None:
        return None
    metrics = rnd.state.metrics
    values = [f"{getattr(metrics, name):.2f}" for name in _METRICS]
    return [*values, "on" if rnd.state.emergency else "off"]


_STATE_HEADS = (*_METRICS, "emergency mode")


def _no_state(rnd: Round) -> str:
    if rnd.running:
        return "The conversation's state comes when the round ends."
    return "No state was recorded after this round."


def _totals(transcript: Transcript) -> str:
    turns = sum(len(r.turns) for r in transcript.rounds)
    parts = [count(len(transcript.rounds), "round"), count(turns, "turn")]
    if transcript.cost_usd is not None:
        parts.append(_cost(transcript.cost_usd))
    return " · ".join(parts)


def _heard(turn: Turn) -> str | None:
    if not turn.heard:
        return None
    names = [h.agent_id + (" (emergency path)" if h.emergency else "") for h in turn.heard]
    return f"Heard: {', '.join(names)}"


def _facts(turn: Turn) -> list[str]:
    facts = [] if turn.status is Status.OK else [turn.status.value]
    if turn.sentiment:
        facts.append(f"{turn.sentiment.label} ({turn.sentiment.score:+.2f})")
    facts += turn_facts(turn)
    if turn.error:
        facts.append(f"error: {turn.error}")
    return facts


def _round_note(rnd: Round) -> str:
    return "" if rnd.status is Status.OK else f" ({rnd.status.value})"


def _title(transcript: Transcript) -> str:
    return " ".join(transcript.title.split()) or "Untitled session"


# --- Markdown ----------------------------------------------------------------------------


def _md(text: str) -> str:
    """Text safe in Markdown: no raw HTML gets through, no link runs a script (the page's
    rule, :mod:`psyche_sse.links`); Markdown itself is kept."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return neutralise_markdown_links(escaped)


def _md_quote(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in _md(text).splitlines() or [""])


def _md_summary(rnd: Round, times: _Times, day_of: str) -> list[str]:
    out = [f"*{_md(_summary(rnd, times, day_of))}*", ""]
    cells = _state_cells(rnd)
    if cells is None or rnd.state is None:
        return [*out, f"*{_no_state(rnd)}*", ""]
    out += [
        f"State after round {rnd.index}:",
        "",
        "| " + " | ".join(_STATE_HEADS) + " |",
        "|" + "---:|" * len(_METRICS) + ":---|",
        "| " + " | ".join(cells) + " |",
        "",
    ]
    guidance = [f"- Guidance for the next round: {_md(g)}" for g in rnd.state.guidance]
    return out + guidance + ([""] if guidance else [])


def to_markdown(transcript: Transcript, *, zone: tzinfo | None = None) -> str:
    times = _Times(transcript, zone)
    out = [
        f"# {_md(_title(transcript))}",
        "",
        f"- Session: `{transcript.id}`",
        f"- Started: {times.when(transcript.created)}",
        f"- Last activity: {times.when(transcript.updated, day_of=transcript.created)}",
        f"- {_totals(transcript)}",
        f"- {times.note}",
        "",
    ]
    for rnd in transcript.rounds:
        out += [f"## Round {rnd.index}" + _round_note(rnd), ""]
        out += _md_summary(rnd, times, transcript.created)
        if rnd.stimulus:
            out += ["**Stimulus:**", "", _md_quote(rnd.stimulus), ""]
        out += ["**Situation:**", "", _md_quote(rnd.situation), ""]
        for turn in rnd.turns:
            out += [f"### {_md(turn.agent_id)}", ""]
            heard = _heard(turn)
            if heard:
                out += [f"*{_md(heard)}*", ""]
            out += [f"- Guidance: {_md(line)}" for line in turn.guidance]
            if turn.guidance:
                out.append("")
            out += [_md(turn.text).strip() or "*(no text)*", ""]
            if turn.reasoning:
                out += ["*Reasoning:*", "", _md_quote(turn.reasoning), ""]
            out += [f"*{_md(' · '.join(_facts(turn)))}*", ""]
    return "\n".join(out).rstrip() + "\n"


# --- HTML --------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light dark; --muted: #6b7280; --line: #d1d5db; }
body { font: 16px/1.55 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto;
  padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .25rem; }
h2 .status { font-size: .8rem; }
.meta, .facts { color: var(--muted); font-size: .85rem; }
.meta { margin: .25rem 0; }
section.round { border-top: 1px solid var(--line); margin-top: 2rem; padding-top: .5rem; }
.summary { font-size: .85rem; margin: .5rem 0 1.25rem; padding: .5rem .75rem;
  border: 1px solid var(--line); border-radius: 6px; overflow-x: auto; }
.summary p { margin: 0 0 .5rem; }
.summary ul { margin: .5rem 0 0; padding-left: 1.25rem; }
.summary caption { text-align: left; color: var(--muted); padding-bottom: .25rem; }
blockquote { margin: .5rem 0 1rem; padding: .5rem 1rem; border-left: 3px solid var(--line);
  white-space: pre-wrap; }
article.turn { border-left: 4px solid var(--agent, #888); padding: .25rem 0 .25rem 1rem;
  margin: 1.25rem 0; }
article.turn h3 { color: var(--agent, inherit); margin: 0 0 .25rem; font-size: 1.05rem; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.status { font-size: .75rem; text-transform: uppercase; letter-spacing: .05em;
  margin-left: .5rem; color: var(--muted); }
details { font-size: .9rem; color: var(--muted); }
details .text { margin: .25rem 0 .5rem; }
.picture { margin: 1.5rem 0; }
.picture svg { max-width: 100%; height: auto; }
.picture-network svg { max-width: 28rem; }
table { border-collapse: collapse; font-size: .85rem; }
td, th { padding: .15rem .5rem; border-bottom: 1px solid var(--line); text-align: right; }
th { font-weight: 600; }
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_turn(turn: Turn) -> str:
    archetype = BY_ID.get(turn.agent_id)
    style = f' style="--agent: {archetype.colour}"' if archetype else ""
    status = "" if turn.status is Status.OK else f'<span class="status">{_e(turn.status)}</span>'
    parts = [f'<article class="turn"{style}>', f"<h3>{_e(turn.agent_id)}{status}</h3>"]
    heard = _heard(turn)
    if heard:
        parts.append(f'<p class="facts">{_e(heard)}</p>')
    if turn.guidance:
        items = "".join(f"<li>{_e(line)}</li>" for line in turn.guidance)
        parts.append(f'<ul class="facts">{items}</ul>')
    parts.append(f'<div class="text">{_e(turn.text)}</div>')
    if turn.reasoning:
        parts.append(
            f'<details><summary>Reasoning</summary><div class="text">{_e(turn.reasoning)}</div>'
            "</details>"
        )
    parts += [f'<p class="facts">{_e(" · ".join(_facts(turn)))}</p>', "</article>"]
    return "\n".join(parts)


def _html_summary(rnd: Round, times: _Times, day_of: str) -> str:
    parts = ['<div class="summary">', f"<p>{_e(_summary(rnd, times, day_of))}</p>"]
    cells = _state_cells(rnd)
    if cells is None or rnd.state is None:
        parts.append(f'<p class="facts">{_e(_no_state(rnd))}</p>')
    else:
        heads = "".join(f'<th scope="col">{_e(head)}</th>' for head in _STATE_HEADS)
        values = "".join(f"<td>{_e(cell)}</td>" for cell in cells)
        parts.append(
            f"<table><caption>State after round {_e(rnd.index)}</caption>"
            f"<tr>{heads}</tr><tr>{values}</tr></table>"
        )
        if rnd.state.guidance:
            items = "".join(
                f"<li>Guidance for the next round: {_e(line)}</li>" for line in rnd.state.guidance
            )
            parts.append(f"<ul>{items}</ul>")
    parts.append("</div>")
    return "\n".join(parts)


def to_html(transcript: Transcript, *, zone: tzinfo | None = None) -> str:
    times = _Times(transcript, zone)
    title = _title(transcript)
    started = times.when(transcript.created)
    last = times.when(transcript.updated, day_of=transcript.created)
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Session <code>{_e(transcript.id)}</code> · started {_e(started)} · '
        f"last activity {_e(last)} · {_e(_totals(transcript))}</p>",
        f'<p class="meta">{_e(times.note)}</p>',
    ]
    for rnd in transcript.rounds:
        body.append('<section class="round">')
        status = "" if rnd.status is Status.OK else f'<span class="status">{_e(rnd.status)}</span>'
        body.append(f"<h2>Round {_e(rnd.index)}{status}</h2>")
        body.append(_html_summary(rnd, times, transcript.created))
        if rnd.stimulus:
            body.append(
                f"<p><strong>Stimulus</strong></p><blockquote>{_e(rnd.stimulus)}</blockquote>"
            )
        body.append(
            f"<p><strong>Situation</strong></p><blockquote>{_e(rnd.situation)}</blockquote>"
        )
        body.extend(_html_turn(turn) for turn in rnd.turns)
        body.append("</section>")
    if transcript.rounds:
        body += [
            '<section class="pictures">',
            "<h2>The conversation in pictures</h2>",
            sentiment_chart(transcript),
            state_chart(transcript),
            network_picture(transcript),
            "</section>",
        ]
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)} · psyche-sse</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


class _Render(Protocol):
    def __call__(self, transcript: Transcript, *, zone: tzinfo | None = None) -> str: ...


FORMATS: MappingProxyType[str, tuple[_Render, str, str]] = MappingProxyType(
    {
        "json": (to_json, "application/json", "json"),
        "md": (to_markdown, "text/markdown; charset=utf-8", "md"),
        "html": (to_html, "text/html; charset=utf-8", "html"),
    }
)
"""Format name -> (render, media type, file extension)."""

__all__ = (
    "FORMATS",
    "ExportFile",
    "count",
    "export",
    "filename",
    "from_json",
    "to_html",
    "to_json",
    "to_markdown",
)
