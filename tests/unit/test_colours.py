"""The page's colours, read from the stylesheet itself: every text colour readable on the
backgrounds it is used on (WCAG 2 AA) in the light scheme and the dark one, the person's
colour far from every archetype's, each archetype still its own hue.

The contrast ratio is WCAG's (tests/colours.py). Distances between colours are CIEDE2000
(coloraide's), the perceptual difference in CIE Lab.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from importlib import resources

import pytest
import tinycss2
from coloraide import Color
from tests.colours import contrast, luminance

from psyche_sse.archetypes import ARCHETYPES

TEXT = 4.5  # WCAG 1.4.3, body text
UI = 3.0  # WCAG 1.4.11, lines and marks that carry meaning; 1.4.3, large text

SCHEMES = ("light", "dark")
# Each archetype's custom properties are named by its slug: --agent-anima-animus.
AGENTS = tuple(a.slug for a in ARCHETYPES)
SPEC = {a.slug: a.colour for a in ARCHETYPES}

# Every text colour the stylesheet uses, with the backgrounds it is drawn on.
TEXT_ON = {
    "ink": ("bg", "surface", "sunken", "info-bg", "alert-bg"),
    "ink-soft": ("surface",),
    "muted": ("bg", "surface", "sunken"),
    "on-person": ("person", "person-hover"),
    "on-danger": ("danger", "danger-hover"),
    "danger": ("bg", "surface", "bad-soft-bg"),
    "bad-ink": ("bad-bg",),
    "bad-strong": ("bad-soft-bg",),
    "orange-ink": ("orange-bg",),
    "neutral-ink": ("neutral-bg",),
    "good-ink": ("good-bg",),
    "good-strong-ink": ("good-strong-bg", "good-bg"),
    "warn-ink": ("warn-bg", "surface", "bg"),
    # a search result's match, marked in its passage
    "found-ink": ("found-bg",),
    "alert-ink": ("bg", "surface"),
    # the threshold labels of the state picture, on the pictures' panel
    "emergency": ("surface",),
    # an agent's name on a card, the intro's list, the status line
    **{f"agent-{slug}-text": ("bg", "surface") for slug in AGENTS},
    "agent-other-text": ("bg", "surface"),
    # an avatar's initial
    "surface": tuple(f"agent-{slug}-text" for slug in (*AGENTS, "other")),
}
# Marks that carry meaning, and large text, at 3:1.
MARKS_ON = {
    **{f"agent-{slug}": ("bg", "surface") for slug in AGENTS},
    "agent-other": ("bg", "surface"),
    **{
        f"metric-{name}": ("surface",)
        for name in ("conflict", "engagement", "diversity", "repetition", "intensity")
    },
    "emergency": ("surface",),
    "field-line": ("bg", "surface"),  # the fields' borders, and the error page's big number
    "focus": ("bg", "surface"),
    "person": ("bg",),  # the person's message stands out of the page
}
# Colours used only for large text (the error page's status number), checked at 3:1 above.
LARGE_TEXT = ("field-line",)
# Text colours that name other variables: --agent-text is whichever archetype's is in force.
STANDS_FOR = {"agent-text": tuple(f"agent-{slug}-text" for slug in (*AGENTS, "other"))}


def stylesheet() -> list[tinycss2.ast.Node]:
    text = resources.files("psyche_sse").joinpath("static/psyche.css").read_text("utf-8")
    rules: list[tinycss2.ast.Node] = tinycss2.parse_stylesheet(
        text, skip_comments=True, skip_whitespace=True
    )
    return rules


def declarations(content: list[tinycss2.ast.Node] | None) -> Iterator[tinycss2.ast.Declaration]:
    for item in tinycss2.parse_blocks_contents(
        content or [], skip_comments=True, skip_whitespace=True
    ):
        if item.type == "declaration":
            yield item


def custom_properties(rule: tinycss2.ast.QualifiedRule) -> dict[str, str]:
    return {
        d.name.removeprefix("--"): tinycss2.serialize(d.value).strip()
        for d in declarations(rule.content)
        if d.name.startswith("--")
    }


def is_root(rule: tinycss2.ast.Node) -> bool:
    return rule.type == "qualified-rule" and tinycss2.serialize(rule.prelude).strip() == ":root"


def schemes() -> dict[str, dict[str, str]]:
    """The custom properties of ``:root``, and of ``:root`` under the dark scheme's query
    layered over them."""
    light: dict[str, str] = {}
    dark: dict[str, str] = {}
    for rule in stylesheet():
        if is_root(rule):
            light |= custom_properties(rule)
        elif rule.type == "at-rule" and rule.lower_at_keyword == "media":
            query = " ".join(tinycss2.serialize(rule.prelude).split())
            if query == "(prefers-color-scheme: dark)":
                inner = tinycss2.parse_rule_list(
                    rule.content or [], skip_comments=True, skip_whitespace=True
                )
                for nested in inner:
                    assert is_root(nested), "the dark scheme only sets :root's properties"
                    dark |= custom_properties(nested)
    return {"light": light, "dark": light | dark}


SCHEME_PROPERTIES = schemes()


def colour(name: str, properties: Mapping[str, str]) -> Color:
    """A custom property's colour, following ``var()`` to the colour it names."""
    value = properties[name]
    while value.startswith("var(--"):
        value = properties[value.removeprefix("var(--").removesuffix(")")]
    return Color(value)


def pairs(table: Mapping[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    return [(fg, bg) for fg, bgs in table.items() for bg in bgs]


# --- the formulas, on values WCAG and CIE publish -----------------------------------------


def test_the_contrast_formula_gives_the_published_ratios() -> None:
    assert contrast(Color("#000"), Color("#fff")) == pytest.approx(21.0)
    assert contrast(Color("#fff"), Color("#fff")) == pytest.approx(1.0)
    assert contrast(Color("#777"), Color("#fff")) == pytest.approx(4.48, abs=0.01)
    assert contrast(Color("#767676"), Color("#fff")) == pytest.approx(4.54, abs=0.01)
    # and agrees with coloraide's own WCAG 2.1 contrast
    # and agrees with coloraide's (which linearises from 0.03928, WCAG 2.0's figure)
    assert contrast(Color("#2c3e50"), Color("#f39c12")) == pytest.approx(
        Color("#2c3e50").contrast("#f39c12", method="wcag21"), rel=1e-3
    )


def test_delta_e_2000_matches_a_published_pair() -> None:
    # Sharma, Wu and Dalal's test data for CIEDE2000, pair 1.
    a = Color("lab-d65", [50, 2.6772, -79.7751])
    b = Color("lab-d65", [50, 0, -82.7485])
    assert a.delta_e(b, method="2000") == pytest.approx(2.0425, abs=0.001)


# --- the stylesheet ------------------------------------------------------------------------


def test_the_stylesheet_defines_both_schemes_and_the_page_allows_both() -> None:
    light, dark = SCHEME_PROPERTIES["light"], SCHEME_PROPERTIES["dark"]
    for name in ("bg", "surface", "ink"):
        assert colour(name, light) != colour(name, dark), name
    assert luminance(colour("bg", light)) > 0.8 > 0.02 > luminance(colour("bg", dark))
    base = resources.files("psyche_sse").joinpath("templates/base.html").read_text("utf-8")
    assert '<meta name="color-scheme" content="light dark">' in base


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("fg", "bg"), pairs(TEXT_ON))
def test_text_meets_wcag_aa(scheme: str, fg: str, bg: str) -> None:
    properties = SCHEME_PROPERTIES[scheme]
    ratio = contrast(colour(fg, properties), colour(bg, properties))
    assert ratio >= TEXT, f"--{fg} on --{bg} in the {scheme} scheme: {ratio:.2f}:1"


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("fg", "bg"), pairs(MARKS_ON))
def test_marks_and_large_text_meet_wcag_aa(scheme: str, fg: str, bg: str) -> None:
    properties = SCHEME_PROPERTIES[scheme]
    ratio = contrast(colour(fg, properties), colour(bg, properties))
    assert ratio >= UI, f"--{fg} on --{bg} in the {scheme} scheme: {ratio:.2f}:1"


def test_every_text_colour_in_the_stylesheet_is_one_checked_above() -> None:
    """A new ``color:`` must join TEXT_ON, with the backgrounds it sits on."""
    used: set[str] = set()

    def walk(rules: list[tinycss2.ast.Node]) -> None:
        for rule in rules:
            if rule.type == "at-rule" and rule.content:
                walk(tinycss2.parse_rule_list(rule.content, True, True))
            elif rule.type == "qualified-rule":
                for d in declarations(rule.content):
                    if d.lower_name == "color":
                        used.add(tinycss2.serialize(d.value).strip())

    walk(stylesheet())
    assert used, "no color: declarations found"
    keywords = {"inherit", "currentcolor"}
    for value in used - keywords:
        assert value.startswith("var(--"), f"color: {value} is not one of the page's variables"
        name = value.removeprefix("var(--").removesuffix(")")
        for each in STANDS_FOR.get(name, (name,)):
            checked = TEXT_ON.get(each) or (each in LARGE_TEXT and MARKS_ON.get(each))
            assert checked, f"color: {value} is not checked for contrast"


def test_no_colour_is_written_outside_the_custom_properties() -> None:
    """Every colour is a variable of the two schemes: a literal would stay the same in both."""
    found: list[str] = []

    def literals(tokens: list[tinycss2.ast.Node]) -> Iterator[str]:
        for token in tokens:
            if token.type == "hash":
                yield f"#{token.value}"
            elif token.type == "function":
                if Color.match(tinycss2.serialize([token])) is not None:
                    yield tinycss2.serialize([token])
                else:
                    yield from literals(token.arguments)
            elif (
                token.type == "ident"
                and token.lower_value not in ("transparent", "currentcolor")
                and Color.match(token.value) is not None
            ):
                yield token.value

    def walk(rules: list[tinycss2.ast.Node]) -> None:
        for rule in rules:
            if rule.type == "at-rule" and rule.content:
                walk(tinycss2.parse_rule_list(rule.content, True, True))
            elif rule.type == "qualified-rule" and not is_root(rule):
                for d in declarations(rule.content):
                    found.extend(f"{d.name}: {lit}" for lit in literals(d.value))

    walk(stylesheet())
    assert found == []


# --- who is who ----------------------------------------------------------------------------

PERSON_APART = 15.0  # CIEDE2000: well past "clearly different" (about 10)
AGENTS_APART = 10.0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_person_looks_like_none_of_the_archetypes(scheme: str) -> None:
    properties = SCHEME_PROPERTIES[scheme]
    person = colour("person", properties)
    for slug in AGENTS:
        for tone in (f"agent-{slug}", f"agent-{slug}-text"):
            distance = person.delta_e(colour(tone, properties), method="2000")
            assert distance >= PERSON_APART, f"--person and --{tone} ({scheme}): {distance:.1f}"
        distance = person.delta_e(SPEC[slug], method="2000")
        assert distance >= PERSON_APART, f"--person and {slug}'s {SPEC[slug]}: {distance:.1f}"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_archetypes_look_apart_and_keep_their_hue(scheme: str) -> None:
    properties = SCHEME_PROPERTIES[scheme]
    for a, b in itertools.combinations(AGENTS, 2):
        distance = colour(f"agent-{a}", properties).delta_e(
            colour(f"agent-{b}", properties), method="2000"
        )
        assert distance >= AGENTS_APART, f"{a} and {b} ({scheme}): {distance:.1f}"
    for slug in AGENTS:
        spec_hue = Color(SPEC[slug]).convert("lch-d65")["hue"]
        for tone in (f"agent-{slug}", f"agent-{slug}-text"):
            hue = colour(tone, properties).convert("lch-d65")["hue"]
            turn = abs((hue - spec_hue + 180) % 360 - 180)
            assert turn <= 15, f"--{tone} ({scheme}) turned {turn:.0f}° from {SPEC[slug]}"
