"""The conversation's state after each round, the emergency mode it drives, and guidance.

Measured on the replies of the round just finished (the recent window), each metric in
[0, 1]; words are lower-cased runs of letters and apostrophes.

- **engagement**: the replies' mean length in words, 150 words counting as 1.0.
- **diversity**: distinct words over all words, in each reply, averaged over the window
  (so a longer window or longer replies do not lower it by themselves; what the replies
  repeat of one another is :attr:`repetition`'s).
- **repetition**: the share of the window's word trigrams that occur more than once in it.
- **conflict**: half the share of replies with a word of disagreement (:data:`CONFLICT_WORDS`),
  half the sentiment divergence (the spread of the replies' scores, max − min, over 2).
- **intensity**: how far the replies' sentiment is from neutral: the mean of |score|.
- **stagnation**: 1 − engagement × diversity.

Emergency mode (:class:`EmergencyMode`) turns on when stagnation exceeds
:data:`EMERGENCY_ON`, and off when it falls below :data:`EMERGENCY_OFF` with at least
:data:`MIN_EMERGENCY_ROUNDS` rounds since it came on. :func:`guidance` says what the next
round's prompts should hear about the state.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .transcript import Metrics

WORDS_FOR_FULL_ENGAGEMENT = 150
EMERGENCY_ON = 0.6
EMERGENCY_OFF = 0.48
MIN_EMERGENCY_ROUNDS = 2

CONFLICT_WORDS = frozenset(
    {
        "against",
        "angry",
        "argue",
        "blame",
        "conflict",
        "disagree",
        "fight",
        "furious",
        "never",
        "refuse",
        "resent",
        "wrong",
    }
)

# Guidance: (metric, threshold, above?, the line the next round's prompts get).
HIGH_CONFLICT = 0.6
LOW_ENGAGEMENT = 0.3
HIGH_REPETITION = 0.3
HIGH_INTENSITY = 0.6
GUIDANCE_CONFLICT = "Conflict is high: acknowledge what the others said and look for common ground."
GUIDANCE_ENGAGEMENT = "Engagement is low: engage more fully, with something concrete to try."
GUIDANCE_REPETITION = "The council repeats itself: say something new, from another angle."
GUIDANCE_STAGNATION = "The conversation is stagnating: make a bolder, different proposal."
GUIDANCE_INTENSITY = "Emotional intensity is high: stay calm and steady, slow things down."

_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True, slots=True)
class Said:
    """A reply as the state sees it: its text and its sentiment score (−1…1)."""

    text: str
    score: float


def words(text: str) -> list[str]:
    return [w.strip("'") for w in _WORD.findall(text.lower()) if w.strip("'")]


def measure(window: Sequence[Said]) -> Metrics:
    """The state of the conversation over ``window`` (all zero but stagnation, 1.0, when it
    holds no words)."""
    per_reply = [words(r.text) for r in window]
    every = [w for ws in per_reply for w in ws]
    if not every:
        return Metrics(
            conflict=0.0,
            engagement=0.0,
            diversity=0.0,
            repetition=0.0,
            intensity=0.0,
            stagnation=1.0,
        )
    engagement = min(1.0, len(every) / len(window) / WORDS_FOR_FULL_ENGAGEMENT)
    diversity = sum(len(set(ws)) / len(ws) for ws in per_reply if ws) / len(window)
    trigrams = Counter(tuple(ws[i : i + 3]) for ws in per_reply for i in range(max(0, len(ws) - 2)))
    total = sum(trigrams.values())
    repeated = sum(n for n in trigrams.values() if n > 1)
    repetition = repeated / total if total else 0.0
    scores = [r.score for r in window]
    quarrelsome = sum(1 for ws in per_reply if CONFLICT_WORDS.intersection(ws)) / len(window)
    divergence = (max(scores) - min(scores)) / 2
    return Metrics(
        conflict=_unit(0.5 * quarrelsome + 0.5 * divergence),
        engagement=_unit(engagement),
        diversity=_unit(diversity),
        repetition=_unit(repetition),
        intensity=_unit(sum(abs(s) for s in scores) / len(scores)),
        stagnation=_unit(1 - engagement * diversity),
    )


def guidance(metrics: Metrics) -> tuple[str, ...]:
    """The lines of guidance ``metrics`` call for, in a fixed order."""
    lines = []
    if metrics.conflict > HIGH_CONFLICT:
        lines.append(GUIDANCE_CONFLICT)
    if metrics.engagement < LOW_ENGAGEMENT:
        lines.append(GUIDANCE_ENGAGEMENT)
    if metrics.repetition > HIGH_REPETITION:
        lines.append(GUIDANCE_REPETITION)
    if metrics.stagnation > EMERGENCY_ON:
        lines.append(GUIDANCE_STAGNATION)
    if metrics.intensity > HIGH_INTENSITY:
        lines.append(GUIDANCE_INTENSITY)
    return tuple(lines)


@dataclass(frozen=True, slots=True)
class Switch:
    """Emergency mode changed after round ``round``."""

    active: bool
    reason: str
    stagnation: float
    round: int


@dataclass(frozen=True, slots=True)
class EmergencyMode:
    """Emergency mode with hysteresis: ``since`` is the round after which it came on."""

    active: bool = False
    since: int | None = None

    def step(self, stagnation: float, round_index: int) -> tuple[EmergencyMode, Switch | None]:
        """The mode after round ``round_index`` ended with ``stagnation``, and the switch
        if it changed."""
        if not self.active and stagnation > EMERGENCY_ON:
            reason = f"stagnation {stagnation:.2f} is above {EMERGENCY_ON}"
            return EmergencyMode(True, round_index), Switch(True, reason, stagnation, round_index)
        if (
            self.active
            and stagnation < EMERGENCY_OFF
            and round_index - (self.since or 0) >= MIN_EMERGENCY_ROUNDS
        ):
            reason = f"stagnation {stagnation:.2f} is below {EMERGENCY_OFF}"
            return EmergencyMode(), Switch(False, reason, stagnation, round_index)
        return self, None


def _unit(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 4)
