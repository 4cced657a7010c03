"""The conversation's state: metrics computed by hand on fixed texts, guidance, and the
emergency mode's hysteresis."""

from __future__ import annotations

import pytest
from tests.factories import metrics

from psyche_sse import state
from psyche_sse.state import EmergencyMode, Said, guidance, measure


def test_metrics_by_hand() -> None:
    window = [
        # 6 words, 5 distinct ("the" twice); a conflict word ("wrong"); score -0.5
        Said("The plan is wrong, the end.", -0.5),
        # 4 words, all distinct; no conflict word; score +0.5
        Said("I like this plan", 0.5),
    ]
    m = measure(window)
    # engagement: (6 + 4) / 2 = 5 words a reply, over 150
    assert m.engagement == pytest.approx(5 / 150, abs=1e-4)
    # diversity: (5/6 + 4/4) / 2
    assert m.diversity == pytest.approx((5 / 6 + 1) / 2, abs=1e-4)
    # repetition: trigrams "the plan is", "plan is wrong", "is wrong the", "wrong the end",
    # "i like this", "like this plan": six, none twice
    assert m.repetition == 0
    # conflict: half of (1 reply of 2 quarrelsome) + half of ((0.5 - -0.5) / 2)
    assert m.conflict == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)
    # intensity: mean |score|
    assert m.intensity == pytest.approx(0.5)
    # stagnation: 1 - engagement x diversity
    assert m.stagnation == pytest.approx(1 - (5 / 150) * ((5 / 6 + 1) / 2), abs=1e-4)


def test_repetition_counts_every_trigram_said_more_than_once() -> None:
    window = [Said("you should call her now", 0.0), Said("you should call her", 0.0)]
    # trigrams: (you should call) x2, (should call her) x2, (call her now) x1: 4 of 5 repeat
    assert measure(window).repetition == pytest.approx(4 / 5)


def test_full_engagement_and_an_empty_window() -> None:
    # 300 distinct words ("aa", "ab", …): engagement capped at 1.0
    long = " ".join(a + b for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijkl")[:899]
    assert len(long.split()) == 300
    m = measure([Said(long, 0.0)])
    assert (m.engagement, m.diversity, m.stagnation) == (1.0, 1.0, 0.0)
    silent = measure([Said("", 0.0), Said("...", 0.2)])
    assert silent.stagnation == 1.0 and silent.engagement == 0.0


def test_every_metric_stays_in_the_unit_interval() -> None:
    m = measure([Said("no never wrong " * 20, -1.0), Said("fight " * 5, 1.0)])
    for value in (m.conflict, m.engagement, m.diversity, m.repetition, m.intensity):
        assert 0.0 <= value <= 1.0
    assert m.conflict == 1.0 and m.intensity == 1.0


@pytest.mark.parametrize(
    ("values", "lines"),
    [
        ({}, ()),
        ({"conflict": 0.61}, (state.GUIDANCE_CONFLICT,)),
        ({"engagement": 0.29}, (state.GUIDANCE_ENGAGEMENT,)),
        ({"repetition": 0.31}, (state.GUIDANCE_REPETITION,)),
        ({"stagnation": 0.61}, (state.GUIDANCE_STAGNATION,)),
        ({"intensity": 0.61}, (state.GUIDANCE_INTENSITY,)),
        (
            {"conflict": 0.9, "stagnation": 0.9},
            (state.GUIDANCE_CONFLICT, state.GUIDANCE_STAGNATION),
        ),
        ({"conflict": 0.6, "engagement": 0.3, "stagnation": 0.6}, ()),  # at the line: not yet
    ],
)
def test_guidance_names_what_is_off(values: dict[str, float], lines: tuple[str, ...]) -> None:
    stagnation = values.pop("stagnation", 0.3)
    calm = {"conflict": 0.2, "engagement": 0.5, "repetition": 0.1, "intensity": 0.2}
    assert guidance(metrics(stagnation, **{**calm, **values})) == lines


def test_emergency_turns_on_above_the_line_and_off_with_hysteresis() -> None:
    mode = EmergencyMode()
    mode, switch = mode.step(0.6, 1)  # at the line: not above
    assert not mode.active and switch is None
    mode, switch = mode.step(0.61, 2)
    assert mode.active and mode.since == 2
    assert switch is not None and switch.active and switch.round == 2
    assert "0.61" in switch.reason
    # Low, but only one round since it came on: stays on.
    mode, switch = mode.step(0.3, 3)
    assert mode.active and switch is None
    # Between the lines: stays on.
    mode, switch = mode.step(0.5, 4)
    assert mode.active and switch is None
    # Below 0.48 with two rounds passed: off.
    mode, switch = mode.step(0.47, 4)
    assert not mode.active and switch is not None and not switch.active
    # And on again only above 0.6.
    mode, switch = mode.step(0.59, 5)
    assert not mode.active and switch is None


def test_exactly_the_off_line_keeps_it_on() -> None:
    mode = EmergencyMode(True, 1)
    mode, switch = mode.step(0.48, 5)
    assert mode.active and switch is None
