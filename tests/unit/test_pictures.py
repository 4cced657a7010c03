from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from importlib import resources

import pytest
from tests import factories as f

from psyche_sse import pictures
from psyche_sse.archetypes import ARCHETYPES, BY_ID
from psyche_sse.events import Payload
from psyche_sse.pictures import (
    EMERGENCY_OFF,
    EMERGENCY_ON,
    emergency_rounds,
    mentions,
    network_picture,
    quotes,
    sentiment_chart,
    state_chart,
)
from psyche_sse.sentiment import SentimentScores
from psyche_sse.transcript import (
    Heard,
    Metrics,
    Round,
    RoundState,
    Status,
    Transcript,
    Turn,
)

SVG = "{http://www.w3.org/2000/svg}"
PICTURES = (sentiment_chart, state_chart, network_picture)


# --- reading a picture back --------------------------------------------------------------


def svg(html: str) -> ET.Element:
    """The figure's ``<svg>``, parsed as XML (which it must be)."""
    [found] = re.findall(r"<svg\b.*?</svg>", html, re.DOTALL)
    return ET.fromstring(found)


def table(html: str) -> list[list[str]]:
    """The text alternative's table, row by row (header row first)."""
    [found] = re.findall(r"<table>.*?</table>", html, re.DOTALL)
    root = ET.fromstring(found)
    return [["".join(cell.itertext()) for cell in row] for row in root.iter("tr")]


def classed(root: ET.Element, tag: str, name: str) -> list[ET.Element]:
    return [e for e in root.iter(SVG + tag) if name in (e.get("class") or "").split()]


def plot_y(value: float, low: float, high: float) -> float:
    """Where ``value`` sits in a chart's plot (the module's own mapping, re-derived)."""
    return 16 + 200 * (high - value) / (high - low)


# --- sessions ----------------------------------------------------------------------------


def scored_session(scores: list[dict[str, float]], states: list[dict[str, object]]) -> Transcript:
    """A session folded from events: round ``r`` has a turn per agent in ``scores[r]`` with
    that sentiment score, and the state ``states[r]`` (keywords of :func:`f.state`) if any."""
    payloads: list[Payload] = []
    for r, by_agent in enumerate(scores):
        rid, index = f"r{r + 1}", r + 1
        payloads.append(f.round_started(round_id=rid, index=index))
        for agent, score in by_agent.items():
            turn = f"{rid}-{BY_ID[agent].slug}"
            payloads += [
                f.started(turn, agent, round_id=rid),
                f.complete(
                    f"{agent} speaks",
                    turn,
                    agent=agent,
                    round_id=rid,
                    sentiment=SentimentScores(score=score, label="positive"),
                ),
            ]
        if r < len(states):
            payloads.append(f.state(round_id=rid, round_index=index, **states[r]))  # type: ignore[arg-type]
        payloads.append(f.round_complete(round_id=rid, index=index, turns=len(by_agent)))
    return Transcript.from_events(f.SID, f.numbered(*payloads))


def turn(
    agent: str,
    text: str = "",
    *heard: str,
    score: float | None = 0.1,
    status: Status = Status.OK,
) -> Turn:
    return Turn(
        id=f"t-{agent}-{text[:8]}",
        agent_id=agent,
        agent_type="Agent",
        started="2026-01-01T00:00:00+00:00",
        status=status,
        text=text,
        sentiment=None if score is None else SentimentScores(score=score, label="neutral"),
        heard=tuple(Heard(agent_id=h) for h in heard),
    )


def round_of(index: int, turns: list[Turn], state: RoundState | None = None) -> Round:
    return Round(
        id=f"r{index}",
        index=index,
        situation="A situation",
        status=Status.OK,
        started="2026-01-01T00:00:00+00:00",
        turns=turns,
        state=state,
    )


def round_state(stagnation: float = 0.3, *, emergency: bool = False) -> RoundState:
    return RoundState(metrics=f.metrics(stagnation), emergency=emergency)


ALL = {a.agent_id: 0.0 for a in ARCHETYPES}


# --- all three ---------------------------------------------------------------------------


@pytest.mark.parametrize("draw", PICTURES)
def test_a_picture_is_a_labelled_svg_figure_with_a_table_after_it(draw: object) -> None:
    html = str(draw(scored_session([ALL, ALL], [{}, {}])))  # type: ignore[operator]
    assert html.startswith("<figure ") and html.rstrip().endswith("</figure>")
    assert html.index("<svg") < html.index("<details") < html.index("<table>")
    root = svg(html)
    assert root.get("role") == "img"
    assert root.get("viewBox", "").startswith("0 0 ")
    assert root.get("width") is None and root.get("height") is None  # scales with the page
    title, desc = root.find(SVG + "title"), root.find(SVG + "desc")
    assert title is not None and desc is not None and (title.text or "").strip()
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert "<summary>" in html


@pytest.mark.parametrize("draw", PICTURES)
def test_no_rounds_yet_draws_an_empty_frame_that_says_so(draw: object) -> None:
    html = str(draw(Transcript(id="empty")))  # type: ignore[operator]
    root = svg(html)
    assert "No rounds yet" in "".join(root.itertext())
    assert "No rounds yet" in html[html.index("<table>") :]
    assert not classed(root, "polyline", "series")
    assert not classed(root, "rect", "emergency")


@pytest.mark.parametrize("draw", PICTURES)
def test_twenty_rounds_of_five_turns_draw_the_same_bytes_every_time(draw: object) -> None:
    scores = [
        {a.agent_id: ((r * 7 + i * 3) % 21 - 10) / 10 for i, a in enumerate(ARCHETYPES)}
        for r in range(20)
    ]
    session = scored_session(
        scores,
        [{"stagnation": (r % 10) / 10, "emergency": r % 3 == 0} for r in range(20)],
    )
    first = draw(session)  # type: ignore[operator]
    assert draw(session) == first  # type: ignore[operator]
    env = pictures.picture_environment()
    assert draw(session, env=env) == first  # type: ignore[operator]
    root = svg(str(first))
    _, _, width, height = (float(v) for v in root.get("viewBox", "").split())
    for element in root.iter():
        for attribute in ("x", "cx", "x1", "x2"):
            if element.get(attribute) is not None:
                assert 0 <= float(element.get(attribute, "")) <= width
        for attribute in ("y", "cy", "y1", "y2"):
            if element.get(attribute) is not None:
                assert 0 <= float(element.get(attribute, "")) <= height


@pytest.mark.parametrize("draw", PICTURES)
def test_figure_ids_name_the_title_and_description(draw: object) -> None:
    html = str(draw(Transcript(id="e"), figure_id="live-7"))  # type: ignore[operator]
    assert html.startswith('<figure id="live-7"')
    assert svg(html).get("aria-labelledby") == "live-7-title live-7-desc"


# --- sentiment ---------------------------------------------------------------------------


def test_sentiment_has_one_line_per_agent_in_its_colour_a_point_per_turn_and_a_zero_line() -> None:
    scores = [
        {a.agent_id: (i - 2) / 4 for i, a in enumerate(ARCHETYPES)},
        {a.agent_id: 0.42 if a.agent_id == "Self" else -0.3 for a in ARCHETYPES},
        dict.fromkeys(BY_ID, 0.9),
    ]
    html = str(sentiment_chart(scored_session(scores, [])))
    root = svg(html)
    lines = classed(root, "polyline", "series")
    assert [line.get("stroke") for line in lines] == [a.colour for a in ARCHETYPES]
    assert [len((line.get("points") or "").split()) for line in lines] == [3] * 5
    assert len(list(root.iter(SVG + "circle"))) == 15
    # Shadow's first turn scored −0.5: a quarter of the way up from the bottom
    _, first_y = (lines[0].get("points") or "").split()[0].split(",")
    assert float(first_y) == pytest.approx(plot_y(-0.5, -1, 1))
    [zero] = classed(root, "line", "zero")
    assert float(zero.get("y1", "")) == pytest.approx(plot_y(0, -1, 1))
    legend = "".join(next(e for e in root.iter(SVG + "g") if e.get("class") == "legend").itertext())
    for archetype in ARCHETYPES:
        assert archetype.agent_id in legend

    rows = table(html)
    assert rows[0] == ["Round", *BY_ID]
    assert rows[1] == ["1", "−0.50", "−0.25", "0.00", "+0.25", "+0.50"]
    assert rows[2] == ["2", "−0.30", "−0.30", "−0.30", "+0.42", "−0.30"]
    assert rows[3] == ["3", *["+0.90"] * 5]


def test_sentiment_leaves_out_agents_with_no_scored_turn_yet() -> None:
    session = Transcript(
        id="s",
        rounds=[
            round_of(
                1,
                [
                    turn("Shadow", score=0.5),
                    turn("Persona", score=None),  # running: no sentiment yet
                    turn("Anima/Animus", score=0.0, status=Status.ERROR),
                    turn("Self", score=-0.2),
                ],
            )
        ],
    )
    html = str(sentiment_chart(session))
    lines = classed(svg(html), "polyline", "series")
    assert [line.get("stroke") for line in lines] == [BY_ID["Shadow"].colour, BY_ID["Self"].colour]
    assert table(html)[0] == ["Round", "Shadow", "Self"]


def test_sentiment_with_rounds_but_no_score_says_so() -> None:
    html = str(sentiment_chart(Transcript(id="s", rounds=[round_of(1, [turn("Ego", score=None)])])))
    assert "No scores yet" in "".join(svg(html).itertext())
    assert not classed(svg(html), "polyline", "series")


def test_a_turn_keeps_its_place_while_the_rest_of_its_round_streams_in() -> None:
    early = Transcript(id="s", rounds=[round_of(1, [turn("Shadow", score=0.5)])])
    later = Transcript(
        id="s", rounds=[round_of(1, [turn("Shadow", score=0.5), turn("Persona", score=0.1)])]
    )
    [point] = svg(str(sentiment_chart(early))).iter(SVG + "circle")
    assert point.get("cx") == next(svg(str(sentiment_chart(later))).iter(SVG + "circle")).get("cx")


def test_agent_ids_and_labels_from_the_data_are_escaped() -> None:
    nasty = '<script>alert("x")</script>'
    odd = Turn(
        id="t",
        agent_id=nasty,
        agent_type="Agent",
        started="2026-01-01T00:00:00+00:00",
        status=Status.OK,
        text="Ego, I hear you",
        sentiment=SentimentScores(score=0.2, label="<b>bold</b>"),
        heard=(Heard(agent_id=nasty), Heard(agent_id="Ego")),
    )
    session = Transcript(id="s", rounds=[round_of(1, [odd], round_state())])
    for draw in PICTURES:
        html = str(draw(session))
        assert "<script" not in html and "<b>" not in html
        svg(html)  # still well-formed
    html = str(sentiment_chart(session))
    assert "&lt;script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert [line.get("stroke") for line in classed(svg(html), "polyline", "series")] == [
        pictures.UNKNOWN_COLOUR
    ]
    assert quotes(session) == {frozenset({nasty, "Ego"}): 1}


# --- conversation state ------------------------------------------------------------------


def test_state_draws_six_metric_lines_over_rounds_with_a_legend() -> None:
    html = str(state_chart(scored_session([ALL] * 3, [{"stagnation": s} for s in (0.2, 0.5, 0.7)])))
    root = svg(html)
    lines = classed(root, "polyline", "series")
    assert len(lines) == 6
    assert len({(line.get("stroke"), line.get("stroke-dasharray")) for line in lines}) == 6
    assert all(len((line.get("points") or "").split()) == 3 for line in lines)
    stagnation = next(g for g in root.iter(SVG + "g") if g.get("data-name") == "stagnation").find(
        SVG + "polyline"
    )
    assert stagnation is not None
    ys = [float(p.split(",")[1]) for p in (stagnation.get("points") or "").split()]
    assert ys == pytest.approx([plot_y(v, 0, 1) for v in (0.2, 0.5, 0.7)], abs=0.05)
    legend = "".join(next(e for e in root.iter(SVG + "g") if e.get("class") == "legend").itertext())
    for name in ("conflict", "engagement", "diversity", "repetition", "intensity", "stagnation"):
        assert name in legend


def test_state_draws_both_thresholds_as_labelled_lines() -> None:
    root = svg(str(state_chart(scored_session([ALL], [{}]))))
    groups = [g for g in root.iter(SVG + "g") if g.get("class") == "threshold"]
    assert len(groups) == 2
    heights = []
    for group in groups:
        line = group.find(SVG + "line")
        assert line is not None and line.get("stroke-dasharray")
        heights.append(float(line.get("y1", "")))
    assert heights == pytest.approx([plot_y(EMERGENCY_ON, 0, 1), plot_y(EMERGENCY_OFF, 0, 1)])
    labels = ["".join(g.itertext()) for g in groups]
    assert "0.6" in labels[0] and "0.48" in labels[1]


@pytest.mark.parametrize(
    ("emergency_after", "shaded"),
    [
        ([False, False, False, False], []),
        ([True, False, False, False], [2]),
        ([False, True, True, False], [3, 4]),
        ([True, True, True, True], [2, 3, 4]),  # the last one's only shows in the next round
    ],
)
def test_rounds_run_in_emergency_are_shaded(emergency_after: list[bool], shaded: list[int]) -> None:
    session = scored_session([ALL] * 4, [{"emergency": on} for on in emergency_after])
    assert [r.index for r in emergency_rounds(session)] == shaded
    html = str(state_chart(session))
    rects = classed(svg(html), "rect", "emergency")
    assert len(rects) == len(shaded)
    band = (640 - 52 - 60) / 4
    assert [float(r.get("x", "")) for r in rects] == pytest.approx(
        [52 + band * (i - 1) for i in shaded], abs=0.05
    )
    modes = [row[-1] for row in table(html)[1:]]
    assert modes == ["emergency" if i in shaded else "normal" for i in (1, 2, 3, 4)]


def test_state_table_has_each_rounds_metrics() -> None:
    metrics = Metrics(
        conflict=0.1,
        engagement=0.25,
        diversity=0.333,
        repetition=0.0,
        intensity=1.0,
        stagnation=0.7,
    )
    session = Transcript(
        id="s",
        rounds=[
            round_of(1, [], RoundState(metrics=metrics, emergency=True)),
            round_of(2, []),  # still running: no state yet
        ],
    )
    rows = table(str(state_chart(session)))
    assert rows[0] == [
        "Round",
        "conflict",
        "engagement",
        "diversity",
        "repetition",
        "intensity",
        "stagnation",
        "mode",
    ]
    assert rows[1] == ["1", "0.10", "0.25", "0.33", "0.00", "1.00", "0.70", "normal"]
    assert rows[2] == ["2", "No state yet", "emergency"]


def test_state_with_rounds_but_no_state_yet_says_so() -> None:
    html = str(state_chart(Transcript(id="s", rounds=[round_of(1, [turn("Ego")])])))
    root = svg(html)
    assert "No state yet" in "".join(root.itertext())
    assert not classed(root, "polyline", "series")
    assert len([g for g in root.iter(SVG + "g") if g.get("class") == "threshold"]) == 2


# --- the network -------------------------------------------------------------------------


def test_mentions_are_whole_names_in_any_case() -> None:
    assert mentions("As the EGO said,", "Ego")
    assert not mentions("egotistic and egos", "Ego")
    assert mentions("Anima/Animus speaks", "Anima/Animus")
    assert mentions("the anima knows", "Anima/Animus")
    assert mentions("Animus!", "Anima/Animus")
    assert not mentions("animated", "Anima/Animus")
    assert mentions("the Self-image", "Self")  # a hyphen ends a word
    assert not mentions("myself", "Self")


def test_quotes_count_heard_agents_named_once_per_turn_either_way() -> None:
    session = Transcript(
        id="s",
        rounds=[
            round_of(
                1,
                [
                    turn("Shadow", "Persona, Persona, always Persona.", "Persona", "Self"),
                    turn("Persona", "The shadow is rude.", "Shadow", "Ego"),
                    turn("Self", "Ego and Persona both.", "Shadow", "Ego"),  # Persona unheard
                ],
            ),
            round_of(2, [turn("Ego", "The anima was right.", "Anima/Animus", "Self")]),
        ],
    )
    assert quotes(session) == {
        frozenset({"Shadow", "Persona"}): 2,
        frozenset({"Self", "Ego"}): 1,
        frozenset({"Ego", "Anima/Animus"}): 1,
    }
    assert quotes(Transcript(id="e")) == {}


def network_session(*, emergency: bool, quoted: int = 3) -> Transcript:
    turns = [turn("Shadow", f"Persona again {i}", "Persona") for i in range(quoted)]
    turns.append(turn("Ego", "I heard the self.", "Self"))
    return Transcript(
        id="s",
        rounds=[
            round_of(1, turns, round_state(0.7, emergency=True)),
            round_of(2, [], round_state(0.7 if emergency else 0.4, emergency=emergency)),
        ],
    )


def test_network_has_five_nodes_in_council_order_and_nine_paths() -> None:
    root = svg(str(network_picture(network_session(emergency=False))))
    nodes = [g for g in root.iter(SVG + "g") if g.get("class") == "node"]
    assert [g.get("data-agent") for g in nodes] == [a.agent_id for a in ARCHETYPES]
    colours = [next(g.iter(SVG + "circle")).get("fill") for g in nodes]
    assert colours == [a.colour for a in ARCHETYPES]
    normal = classed(root, "line", "normal")
    emergency = classed(root, "line", "emergency")
    assert len(normal) == 5 and len(emergency) == 4
    assert all(line.get("stroke-dasharray") is None for line in normal)
    assert all(line.get("stroke-dasharray") for line in emergency)


@pytest.mark.parametrize("on", [False, True])
def test_emergency_paths_are_open_only_while_the_newest_round_says_so(on: bool) -> None:
    html = str(network_picture(network_session(emergency=on)))
    root = svg(html)
    assert len(classed(root, "line", "open")) == (9 if on else 5)
    assert all("open" in (e.get("class") or "") for e in classed(root, "line", "normal"))
    opens = {row[0]: row[2] for row in table(html)[1:]}
    assert opens["Shadow – Anima/Animus"] == ("yes" if on else "no")
    assert opens["Shadow – Persona"] == "yes"


def test_network_widths_and_table_follow_the_quotes() -> None:
    html = str(network_picture(network_session(emergency=False, quoted=3)))
    paths = {
        frozenset(((e.get("x1"), e.get("y1")), (e.get("x2"), e.get("y2")))): e
        for e in classed(svg(html), "line", "path")
    }
    widths = {e.get("data-quotes"): float(e.get("stroke-width", "")) for e in paths.values()}
    assert widths["3"] > widths["1"] > widths["0"]
    rows = table(html)
    assert rows[0] == ["Path", "Kind", "Open", "Quotes"]
    counts = {row[0]: (row[1], int(row[3])) for row in rows[1:]}
    assert len(counts) == 9
    assert counts["Shadow – Persona"] == ("normal", 3)
    assert counts["Self – Ego"] == ("normal", 1)
    assert counts["Persona – Self"] == ("emergency", 0)
    weights = [
        "".join(g.itertext()).split()
        for g in svg(html).iter(SVG + "g")
        if g.get("class") == "weights"
    ]
    assert sorted(weights[0]) == ["1", "3"]


def test_network_with_no_rounds_draws_the_council_with_every_path_at_zero() -> None:
    html = str(network_picture(Transcript(id="e")))
    root = svg(html)
    assert len([g for g in root.iter(SVG + "g") if g.get("class") == "node"]) == 5
    assert len(classed(root, "line", "path")) == 9
    assert len(classed(root, "line", "open")) == 5
    assert [int(row[3]) for row in table(html)[1:]] == [0] * 9


# --- colours in the page's two schemes -----------------------------------------------------


def stylesheet_text() -> str:
    return resources.files("psyche_sse").joinpath("static/psyche.css").read_text("utf-8")


# What the stylesheet recolours a mark by, and the selector it does it with.
def hook_selector(element: ET.Element) -> str | None:
    for name in ("agent", "metric"):
        value = element.get(f"data-{name}")
        if value is not None:
            return f'[data-{name}="{value}"]'
    if element.get("data-emergency") is not None:
        return "[data-emergency]"
    classes = (element.get("class") or "").split()
    if "threshold" in classes:
        return ".threshold"
    if "emergency" in classes:
        return "rect.emergency" if element.tag == SVG + "rect" else ".path.emergency"
    return None


@pytest.mark.parametrize("draw", PICTURES)
def test_every_coloured_mark_has_a_hook_the_stylesheet_recolours(draw: object) -> None:
    """A colour written into the picture is the light scheme's; the page's stylesheet must
    be able to give each mark the dark scheme's, through a hook on it or around it."""
    session = scored_session(
        [ALL, ALL, ALL], [{"stagnation": 0.7, "emergency": True}, {"stagnation": 0.7}, {}]
    )
    root = svg(str(draw(session)))  # type: ignore[operator]
    parents = {child: parent for parent in root.iter() for child in parent}
    css = stylesheet_text()
    coloured = 0
    for element in root.iter():
        if not any((element.get(a) or "").startswith("#") for a in ("fill", "stroke")):
            continue
        coloured += 1
        hooks = []
        node: ET.Element | None = element
        while node is not None:
            hooks.append(hook_selector(node))
            node = parents.get(node)
        found = [h for h in hooks if h]
        assert found, ET.tostring(element)[:120]
        used = re.search(rf"(?<![\w-]){re.escape(found[0])}(?=[\s,{{])", css)
        assert used, f"psyche.css does not recolour {found[0]}"
    assert coloured > 5
