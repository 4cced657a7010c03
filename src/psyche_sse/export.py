"""A session's transcript as a file to download: JSON, Markdown or a standalone HTML page.

JSON is the lossless form (:func:`from_json` reads it back). Markdown and HTML are for people:
every text from a person or a model is escaped, and the HTML page carries its own CSS and no
script at all (its Content-Security-Policy forbids them too).
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from .archetypes import BY_ID
from .links import neutralise_markdown_links
from .pictures import network_picture, sentiment_chart, state_chart
from .transcript import Round, Status, Transcript, Turn, cost_text, turn_facts

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


def export(transcript: Transcript, fmt: str) -> ExportFile:
    """The transcript in ``fmt`` (one of :data:`FORMATS`); ValueError for another."""
    try:
        render, media_type, extension = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown export format {fmt!r} (use {', '.join(FORMATS)})") from None
    return ExportFile(render(transcript).encode(), media_type, filename(transcript, extension))


def filename(transcript: Transcript, extension: str) -> str:
    """``psyche-<title-slug>-<id>.<extension>``: ASCII, safe in a header and on any disk."""
    ascii_title = unicodedata.normalize("NFKD", transcript.title).encode("ascii", "ignore")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.decode().lower()).strip("-")[:40].strip("-")
    safe_id = re.sub(r"[^A-Za-z0-9]+", "", transcript.id)[:32]
    return f"psyche-{slug or 'session'}-{safe_id or 'session'}.{extension}"


# --- JSON --------------------------------------------------------------------------------


def to_json(transcript: Transcript) -> str:
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


# --- Markdown ----------------------------------------------------------------------------


def _md(text: str) -> str:
    """Text safe in Markdown: no raw HTML gets through, no link runs a script (the page's
    rule, :mod:`psyche_sse.links`); Markdown itself is kept."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return neutralise_markdown_links(escaped)


def _md_quote(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in _md(text).splitlines() or [""])


def _state_line(rnd: Round) -> str | None:
    """The conversation's state after the round, in a line; None before it has one."""
    if rnd.state is None:
        return None
    m = rnd.state.metrics
    line = (
        f"State after round {rnd.index}: conflict {m.conflict:.2f} · engagement "
        f"{m.engagement:.2f} · diversity {m.diversity:.2f} · repetition {m.repetition:.2f} · "
        f"intensity {m.intensity:.2f} · stagnation {m.stagnation:.2f}"
    )
    return line + (" · emergency mode on" if rnd.state.emergency else "")


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


def to_markdown(transcript: Transcript) -> str:
    out = [
        f"# {_md(_title(transcript))}",
        "",
        f"- Session: `{transcript.id}`",
        f"- Started: {transcript.created}",
        f"- Last activity: {transcript.updated}",
        f"- Rounds: {len(transcript.rounds)}",
        f"- Cost: {_cost(transcript.cost_usd)}",
        "",
    ]
    for rnd in transcript.rounds:
        out += [f"## Round {rnd.index}" + _round_note(rnd), ""]
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
        out += [f"*{_md(_round_end(rnd))}*", ""]
        state = _state_line(rnd)
        if state:
            out += [f"**{_md(state)}**", ""]
            guidance = rnd.state.guidance if rnd.state else ()
            out += [f"- Guidance for the next round: {_md(g)}" for g in guidance]
            if guidance:
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def _cost(cost: float | None) -> str:
    return "unknown" if cost is None else cost_text(cost)


def _round_end(rnd: Round) -> str:
    """How the round ended and what it cost, in a line."""
    ending = f"Cost of round {rnd.index}: {_cost(rnd.cost_usd)}"
    return f"{ending} · stopped: {rnd.reason}" if rnd.reason else ending


def _round_note(rnd: Round) -> str:
    return "" if rnd.status is Status.OK else f" ({rnd.status.value})"


def _title(transcript: Transcript) -> str:
    return " ".join(transcript.title.split()) or "Untitled session"


# --- HTML --------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light dark; --muted: #6b7280; --line: #d1d5db; }
body { font: 16px/1.55 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto;
  padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .25rem; }
.meta, .facts { color: var(--muted); font-size: .85rem; }
section.round { border-top: 1px solid var(--line); margin-top: 2rem; padding-top: .5rem; }
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
.state { font-size: .85rem; border-top: 1px dashed var(--line); padding-top: .5rem; }
.picture { margin: 1.5rem 0; }
.picture svg { max-width: 100%; height: auto; }
.picture-network svg { max-width: 28rem; }
table { border-collapse: collapse; font-size: .85rem; }
td, th { padding: .15rem .5rem; border-bottom: 1px solid var(--line); text-align: right; }
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


def to_html(transcript: Transcript) -> str:
    title = _title(transcript)
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Session <code>{_e(transcript.id)}</code> · started '
        f"{_e(transcript.created)} · last activity {_e(transcript.updated)} · "
        f"{len(transcript.rounds)} round(s) · cost {_e(_cost(transcript.cost_usd))}</p>",
    ]
    for rnd in transcript.rounds:
        body.append('<section class="round">')
        body.append(f"<h2>Round {_e(rnd.index)}{_e(_round_note(rnd))}</h2>")
        if rnd.stimulus:
            body.append(
                f"<p><strong>Stimulus</strong></p><blockquote>{_e(rnd.stimulus)}</blockquote>"
            )
        body.append(
            f"<p><strong>Situation</strong></p><blockquote>{_e(rnd.situation)}</blockquote>"
        )
        body.extend(_html_turn(turn) for turn in rnd.turns)
        body.append(f'<p class="facts">{_e(_round_end(rnd))}</p>')
        state = _state_line(rnd)
        if state:
            body.append(f'<p class="state">{_e(state)}</p>')
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


FORMATS: MappingProxyType[str, tuple[Callable[[Transcript], str], str, str]] = MappingProxyType(
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
    "export",
    "filename",
    "from_json",
    "to_html",
    "to_json",
    "to_markdown",
)
