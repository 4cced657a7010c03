"""Pictures of a session, drawn on the server as inline SVG: no script, no charting library.

Three pictures of one :class:`~psyche_sse.transcript.Transcript`, each a ``<figure>`` with a
captioned ``<svg role="img">`` and, after it, a ``<details>`` table with the same numbers for
people who cannot see the picture:

- :func:`sentiment_chart`: each agent's sentiment score, turn by turn, round by round;
- :func:`state_chart`: the six conversation metrics after each round, the stagnation
  thresholds, and the rounds run in emergency mode shaded;
- :func:`network_picture`: who can hear whom, and how often one quoted the other
  (:func:`quotes`).

Geometry is computed here; ``templates/_picture_*.html`` write it out with Jinja's
autoescaping, so an agent id or a label from the data is always escaped. Axes and text use
``currentColor`` and follow the page's text colour. Every coloured mark carries its colour as
an attribute (what a standalone copy, such as the HTML export, shows) and a hook that the
page's stylesheet recolours for its light or dark scheme: ``data-agent`` (an agent's id),
``data-metric`` (a metric's name) or ``data-emergency``, and the classes ``emergency`` and
``threshold``. The same transcript gives the same bytes.
The page and the HTML export both use this module, so it knows nothing of the web layer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import jinja2
from markupsafe import Markup

from .archetypes import ARCHETYPES, BY_ID
from .council import EMERGENCY_PATHS, NORMAL_PATHS
from .state import EMERGENCY_OFF, EMERGENCY_ON
from .transcript import Metrics, Round, Status, Transcript

NO_ROUNDS = "No rounds yet"

UNKNOWN_COLOUR = "#7f8c8d"
EMERGENCY_COLOUR = "#b03a2e"


@dataclass(frozen=True, slots=True)
class MetricStyle:
    """How one metric's line looks: colour and dash pattern both differ, so the lines stay
    apart for readers who do not tell the colours apart, and in print."""

    name: str
    colour: str
    dash: str = ""
    width: float = 2.0


# Okabe–Ito hues, darkened where they are too pale on white; stagnation, the metric the
# thresholds apply to, in the text colour and thicker.
METRICS: tuple[MetricStyle, ...] = (
    MetricStyle("conflict", "#d55e00"),
    MetricStyle("engagement", "#0072b2", "8 4"),
    MetricStyle("diversity", "#009e73", "2 3"),
    MetricStyle("repetition", "#cc79a7", "8 3 2 3"),
    MetricStyle("intensity", "#a6761d", "4 4"),
    MetricStyle("stagnation", "currentColor", "", 3.0),
)

# Chart geometry, in viewBox units.
_WIDTH = 640
_LEFT, _RIGHT, _TOP = 52, 60, 16  # the threshold labels sit in the right margin
_PLOT_HEIGHT = 200
_LEGEND_ROW = 20
_CHAR = 7.0  # about the width of a 12-unit sans-serif character, to lay the legend out


def picture_environment() -> jinja2.Environment:
    """An environment for the picture templates. Each call without ``env`` builds one
    (about 20 ms, compiling the templates); a caller drawing often (the page) builds it once
    and passes it in. Another environment works if it loads the package's templates with
    autoescaping on, as the escaping depends on it."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("psyche_sse", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _render(env: jinja2.Environment | None, name: str, **context: object) -> Markup:
    env = env or picture_environment()
    return Markup(env.get_template(name).render(**context))


# --- shared pieces ---------------------------------------------------------------------


def _n(value: float) -> str:
    """A coordinate, short and the same on every platform."""
    text = f"{value:.1f}".removesuffix(".0")
    return "0" if text == "-0" else text


def signed(score: float) -> str:
    """A score as people read it: ``+0.42``, ``−0.10`` (a true minus sign)."""
    text = f"{score:+.2f}"
    return "0.00" if text[1:] == "0.00" else text.replace("-", "\u2212")


def _colour(agent_id: str) -> str:
    archetype = BY_ID.get(agent_id)
    return archetype.colour if archetype else UNKNOWN_COLOUR


def _council_order(agent_ids: Iterable[str]) -> list[str]:
    """The agents in council order, then any other id in the order first seen."""
    seen = list(dict.fromkeys(agent_ids))
    known = [a.agent_id for a in ARCHETYPES if a.agent_id in seen]
    return known + [a for a in seen if a not in BY_ID]


@dataclass(frozen=True, slots=True)
class Tick:
    at: str
    label: str
    strong: bool = False


# What a legend entry stands for, as the data attribute the stylesheet colours it by:
# ("agent", "Shadow") is written data-agent="Shadow"; None for an entry in the text colour.
Hook = tuple[str, str] | None


@dataclass(frozen=True, slots=True)
class LegendEntry:
    """A legend's sample (a line, or a shaded box when ``swatch``) and its label."""

    label: str
    colour: str
    dash: str
    swatch: bool
    width: float
    x: float
    y: float
    hook: Hook = None

    @property
    def sample(self) -> tuple[str, str, str, str, str]:
        """The sample's x, y (its middle line), end x, the label's x and the box's top."""
        return _n(self.x), _n(self.y), _n(self.x + 20), _n(self.x + 26), _n(self.y - 6)


@dataclass(frozen=True, slots=True)
class Frame:
    """A chart's plot area and axes: rounds along x in equal bands, ``y_ticks`` up the side."""

    title: str
    desc: str
    figure_id: str
    height: int
    left: int
    right: int
    top: int
    bottom: int
    y_label: str
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    separators: tuple[str, ...]  # x of the lines between rounds
    note: str  # a sentence in the middle of an empty chart, or ""
    legend: tuple[LegendEntry, ...]

    @property
    def width(self) -> int:
        return _WIDTH

    @property
    def middle(self) -> str:
        return _n((self.left + self.right) / 2)

    @property
    def centre(self) -> str:
        return _n((self.top + self.bottom) / 2)

    @property
    def note_y(self) -> str:
        """Where the note goes: clear of the zero line and of the thresholds."""
        return _n(self.top + (self.bottom - self.top) * 0.3)


@dataclass(frozen=True, slots=True)
class _Bands:
    """Rounds along x: round ``i`` (0-based) has the band ``left + i·band`` wide ``band``."""

    count: int

    @property
    def band(self) -> float:
        return (_WIDTH - _LEFT - _RIGHT) / max(self.count, 1)

    def x(self, i: int, within: float = 0.5) -> float:
        return _LEFT + self.band * (i + within)

    def ticks(self, rounds: Sequence[Round]) -> tuple[Tick, ...]:
        step = max(1, math.ceil(len(rounds) / 20))  # at most about 20 labels
        return tuple(
            Tick(_n(self.x(i)), str(r.index)) for i, r in enumerate(rounds) if i % step == 0
        )


def _y(value: float, low: float, high: float) -> float:
    value = min(max(value, low), high)
    return _TOP + _PLOT_HEIGHT * (high - value) / (high - low)


LegendItem = tuple[str, str, str, bool, float, Hook]


def _legend(items: Sequence[LegendItem], top: int) -> list[LegendEntry]:
    """Legend entries (label, colour, dash, swatch, width, hook) laid out in rows from
    ``top``."""
    entries: list[LegendEntry] = []
    x, y = float(_LEFT), float(top)
    for label, colour, dash, swatch, width, hook in items:
        wide = 26 + _CHAR * len(label) + 18
        if x > _LEFT and x + wide > _WIDTH - _RIGHT:
            x, y = float(_LEFT), y + _LEGEND_ROW
        entries.append(LegendEntry(label, colour, dash, swatch, width, x, y, hook))
        x += wide
    return entries


def _frame(
    *,
    title: str,
    desc: str,
    figure_id: str,
    rounds: Sequence[Round],
    y_label: str,
    y_ticks: Iterable[Tick],
    note: str,
    legend: Sequence[LegendItem],
) -> Frame:
    bottom = _TOP + _PLOT_HEIGHT
    bands = _Bands(len(rounds))
    entries = _legend(legend, bottom + 52)
    rows = len({e.y for e in entries})
    return Frame(
        title=title,
        desc=desc,
        figure_id=figure_id,
        height=bottom + 52 + _LEGEND_ROW * max(rows, 1),
        left=_LEFT,
        right=_WIDTH - _RIGHT,
        top=_TOP,
        bottom=bottom,
        y_label=y_label,
        y_ticks=tuple(y_ticks),
        x_ticks=bands.ticks(rounds),
        separators=tuple(_n(bands.x(i, 0)) for i in range(1, len(rounds))),
        note=note,
        legend=tuple(entries),
    )


# --- sentiment -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    x: str
    y: str
    title: str


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: an agent's or a metric's points, in order along x."""

    name: str
    colour: str
    dash: str
    width: float
    points: tuple[Point, ...]

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x},{p.y}" for p in self.points)


# A round's turns share its band in this many slots (more when it has more turns), so a
# turn keeps its place while the rest of its round streams in.
_SLOTS = len(ARCHETYPES)


def sentiment_chart(
    transcript: Transcript,
    *,
    env: jinja2.Environment | None = None,
    figure_id: str = "picture-sentiment",
) -> Markup:
    """Each agent's sentiment score (−1…+1) over the session's turns.

    Rounds run along x, each in its own band; a round's turns sit in it in speaking order.
    Only finished turns (status ``ok``) with a score are drawn: a turn that failed or was
    cancelled has no measured sentiment. An agent with no scored turn yet has no series, no
    legend entry and no column in the table. The table has a row per round and a column per
    agent, the scores of the agent's turns in that round.
    """
    rounds = transcript.rounds
    bands = _Bands(len(rounds))
    points: dict[str, list[Point]] = {}
    rows: list[tuple[int, dict[str, list[str]]]] = []
    for i, round_ in enumerate(rounds):
        slots = max(_SLOTS, len(round_.turns))
        cells: dict[str, list[str]] = {}
        for s, turn in enumerate(round_.turns):
            if turn.sentiment is None or turn.status is not Status.OK:
                continue
            score = turn.sentiment.score
            label = (
                f"{turn.agent_id}, round {round_.index}: {signed(score)} ({turn.sentiment.label})"
            )
            point = Point(_n(bands.x(i, (s + 0.5) / slots)), _n(_y(score, -1, 1)), label)
            points.setdefault(turn.agent_id, []).append(point)
            cells.setdefault(turn.agent_id, []).append(signed(score))
        rows.append((round_.index, cells))
    agents = _council_order(points)
    series = [Series(agent, _colour(agent), "", 2.0, tuple(points[agent])) for agent in agents]
    note = NO_ROUNDS if not rounds else "No scores yet" if not series else ""
    desc = (
        note
        or f"Sentiment from −1 to +1 of {len(series)} agents over {len(rounds)} rounds: "
        + "; ".join(f"{s.name} {len(s.points)} turns" for s in series)
        + "."
    )
    frame = _frame(
        title="Sentiment by turn",
        desc=desc,
        figure_id=figure_id,
        rounds=rounds,
        y_label="sentiment",
        y_ticks=(
            Tick(_n(_y(v, -1, 1)), label, v == 0)
            for v, label in ((1, "+1"), (0.5, "+0.5"), (0, "0"), (-0.5, "−0.5"), (-1, "−1"))
        ),
        note=note,
        legend=[(s.name, s.colour, "", False, 2.0, ("agent", s.name)) for s in series],
    )
    table = [
        (index, [", ".join(cells.get(agent, [])) or "–" for agent in agents])
        for index, cells in rows
    ]
    return _render(
        env, "_picture_sentiment.html", frame=frame, series=series, agents=agents, rows=table
    )


# --- conversation state ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shade:
    x: str
    width: str
    title: str


@dataclass(frozen=True, slots=True)
class Threshold:
    y: str
    label: str
    title: str


def emergency_rounds(transcript: Transcript) -> list[Round]:
    """The rounds run in emergency mode: those after a round whose state turned it on."""
    rounds = transcript.rounds
    return [
        r
        for previous, r in pairwise(rounds)
        if previous.state is not None and previous.state.emergency
    ]


def state_chart(
    transcript: Transcript,
    *,
    env: jinja2.Environment | None = None,
    figure_id: str = "picture-state",
) -> Markup:
    """The six conversation metrics (0…1) after each round, one line each.

    The stagnation thresholds (:data:`EMERGENCY_ON`, :data:`EMERGENCY_OFF`) are drawn as
    labelled lines, and each round run in emergency mode (:func:`emergency_rounds`) is shaded
    by one ``rect class="emergency"``. A round with no state yet has no points. The table has
    a row per round: its metrics and the mode it ran in.
    """
    rounds = transcript.rounds
    bands = _Bands(len(rounds))
    in_emergency = {id(r) for r in emergency_rounds(transcript)}
    shades = [
        Shade(
            _n(bands.x(i, 0)),
            _n(bands.band),
            f"round {r.index} ran in emergency mode",
        )
        for i, r in enumerate(rounds)
        if id(r) in in_emergency
    ]
    with_state = [(i, r, r.state.metrics) for i, r in enumerate(rounds) if r.state is not None]
    series = [
        Series(
            style.name,
            style.colour,
            style.dash,
            style.width,
            tuple(
                Point(
                    _n(bands.x(i)),
                    _n(_y(_metric(m, style.name), 0, 1)),
                    f"{style.name}, round {r.index}: {_metric(m, style.name):.2f}",
                )
                for i, r, m in with_state
            ),
        )
        for style in METRICS
    ]
    thresholds = [
        Threshold(
            _n(_y(EMERGENCY_ON, 0, 1)),
            f"on {EMERGENCY_ON:g}",
            f"emergency mode turns on when stagnation passes {EMERGENCY_ON:g}",
        ),
        Threshold(
            _n(_y(EMERGENCY_OFF, 0, 1)),
            f"off {EMERGENCY_OFF:g}",
            f"emergency mode turns off when stagnation falls below {EMERGENCY_OFF:g}",
        ),
    ]
    note = NO_ROUNDS if not rounds else "No state yet" if not with_state else ""
    desc = note or (
        f"Six conversation metrics from 0 to 1 after each of {len(with_state)} rounds; "
        f"emergency mode turns on when stagnation passes {EMERGENCY_ON:g} and off below "
        f"{EMERGENCY_OFF:g}; {len(shades)} rounds ran in emergency mode."
    )
    frame = _frame(
        title="Conversation state by round",
        desc=desc,
        figure_id=figure_id,
        rounds=rounds,
        y_label="metric",
        y_ticks=(Tick(_n(_y(v, 0, 1)), f"{v:g}") for v in (1.0, 0.75, 0.5, 0.25, 0.0)),
        note=note,
        legend=[(s.name, s.colour, s.dash, False, s.width, ("metric", s.name)) for s in METRICS]
        + [("emergency mode", EMERGENCY_COLOUR, "", True, 0.0, ("emergency", "mode"))],
    )
    table = [
        (
            r.index,
            [f"{_metric(r.state.metrics, s.name):.2f}" for s in METRICS] if r.state else [],
            "emergency" if id(r) in in_emergency else "normal",
        )
        for r in rounds
    ]
    return _render(
        env,
        "_picture_state.html",
        frame=frame,
        series=series if with_state else [],
        shades=shades,
        thresholds=thresholds,
        metrics=[s.name for s in METRICS],
        rows=table,
        emergency_colour=EMERGENCY_COLOUR,
        on=f"{EMERGENCY_ON:g}",
        off=f"{EMERGENCY_OFF:g}",
    )


def _metric(metrics: Metrics, name: str) -> float:
    value: float = getattr(metrics, name)
    return value


# --- the network -----------------------------------------------------------------------


def _name_pattern(agent_id: str) -> re.Pattern[str]:
    """``agent_id`` as a whole word, any case; ``Anima/Animus`` also as either half."""
    names = [agent_id, *agent_id.split("/")] if "/" in agent_id else [agent_id]
    alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def mentions(text: str, agent_id: str) -> bool:
    """Whether ``text`` names ``agent_id`` (case-insensitive, whole words)."""
    return _name_pattern(agent_id).search(text) is not None


def quotes(transcript: Transcript) -> dict[frozenset[str], int]:
    """How often each pair of agents quoted one another, either way: over all turns, each
    agent a turn heard and names in its text counts once. Pairs never quoted are absent."""
    counts: dict[frozenset[str], int] = {}
    for round_ in transcript.rounds:
        for turn in round_.turns:
            for heard in turn.heard:
                if heard.agent_id != turn.agent_id and mentions(turn.text, heard.agent_id):
                    pair = frozenset((turn.agent_id, heard.agent_id))
                    counts[pair] = counts.get(pair, 0) + 1
    return counts


@dataclass(frozen=True, slots=True)
class Node:
    agent_id: str
    colour: str
    x: str
    y: str
    label_x: str
    label_y: str
    anchor: str


@dataclass(frozen=True, slots=True)
class Edge:
    a: str
    b: str
    kind: str  # "normal" or "emergency"
    open: bool
    quotes: int
    x1: str
    y1: str
    x2: str
    y2: str
    width: str
    label_x: str
    label_y: str


_NET_WIDTH, _NET_HEIGHT = 440, 400
_CX, _CY, _RADIUS, _NODE = 220, 180, 130, 20


def network_picture(
    transcript: Transcript,
    *,
    env: jinja2.Environment | None = None,
    figure_id: str = "picture-network",
) -> Markup:
    """The council as a pentagon in speaking order: normal paths solid, emergency paths
    dashed, the open ones drawn strong. Normal paths are always open; emergency paths are
    open when the newest round's state says emergency mode is on. A path's width grows with
    :func:`quotes`, which the table lists. With no rounds yet the network is still drawn,
    every path at zero, with a note saying so.
    """
    places: dict[str, tuple[float, float]] = {}
    nodes: list[Node] = []
    for i, archetype in enumerate(ARCHETYPES):
        angle = math.radians(-90 + 360 * i / len(ARCHETYPES))
        cos, sin = math.cos(angle), math.sin(angle)
        x, y = _CX + _RADIUS * cos, _CY + _RADIUS * sin
        places[archetype.agent_id] = (x, y)
        anchor = "start" if cos > 0.3 else "end" if cos < -0.3 else "middle"
        out = _NODE + 12
        nodes.append(
            Node(
                archetype.agent_id,
                archetype.colour,
                _n(x),
                _n(y),
                _n(x + out * cos),
                _n(y + out * sin + (6 if sin > 0.3 else 0)),
                anchor,
            )
        )
    last = transcript.last_round
    emergency = bool(last and last.state and last.state.emergency)
    counts = quotes(transcript)
    most = max(counts.values(), default=0)
    edges: list[Edge] = []
    for kind, pairs, is_open in (
        ("normal", NORMAL_PATHS, True),
        ("emergency", EMERGENCY_PATHS, emergency),
    ):
        for a, b in pairs:
            (x1, y1), (x2, y2) = places[a], places[b]
            count = counts.get(frozenset((a, b)), 0)
            length = math.hypot(x2 - x1, y2 - y1) or 1.0
            # the count's label sits beside the middle of the line, not on it
            nx, ny = -(y2 - y1) / length, (x2 - x1) / length
            edges.append(
                Edge(
                    a,
                    b,
                    kind,
                    is_open,
                    count,
                    _n(x1),
                    _n(y1),
                    _n(x2),
                    _n(y2),
                    _n(1.5 + 6 * count / most if most else 1.5),
                    _n((x1 + x2) / 2 + 10 * nx),
                    _n((y1 + y2) / 2 + 10 * ny),
                )
            )
    note = "" if transcript.rounds else NO_ROUNDS
    state = "on" if emergency else "off"
    desc = (
        f"Five agents in speaking order; {len(NORMAL_PATHS)} normal paths, always open, and "
        f"{len(EMERGENCY_PATHS)} emergency paths, {'open' if emergency else 'closed'} "
        f"(emergency mode {state}); {sum(counts.values())} quotes in all."
    )
    legend = _legend(
        [
            ("normal path", "currentColor", "", False, 2.0, None),
            ("emergency path", EMERGENCY_COLOUR, "7 5", False, 2.0, ("emergency", "path")),
        ],
        _NET_HEIGHT - 18,
    )
    return _render(
        env,
        "_picture_network.html",
        figure_id=figure_id,
        width=_NET_WIDTH,
        height=_NET_HEIGHT,
        node_radius=_NODE,
        nodes=nodes,
        edges=edges,
        note=note,
        desc=(note + ". " if note else "") + desc,
        legend=legend,
        emergency=emergency,
        emergency_colour=EMERGENCY_COLOUR,
    )


__all__ = (
    "EMERGENCY_OFF",
    "EMERGENCY_ON",
    "METRICS",
    "emergency_rounds",
    "mentions",
    "network_picture",
    "picture_environment",
    "quotes",
    "sentiment_chart",
    "signed",
    "state_chart",
)
