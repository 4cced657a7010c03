"""Sentiment of a reply, from TextBlob's polarity and subjectivity."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SentimentScores:
    """A reply's sentiment as events carry it: ``score`` (polarity, -1 to +1) and ``label``
    as the protocol names them, and the rest."""

    score: float = 0.0
    label: str = "neutral"
    subjectivity: float = 0.5
    arousal: float = 0.0
    valence: float = 0.0
    dominance: float = 0.5


@dataclass(frozen=True, slots=True)
class Sentiment:
    polarity: float
    subjectivity: float

    @property
    def label(self) -> str:
        return label_for(self.polarity)

    @property
    def arousal(self) -> float:
        return abs(self.polarity) * self.subjectivity

    @property
    def valence(self) -> float:
        return self.polarity

    @property
    def dominance(self) -> float:
        return 1.0 - self.subjectivity if self.polarity > 0 else self.subjectivity

    def scores(self) -> SentimentScores:
        return SentimentScores(
            score=round(self.polarity, 4),
            label=self.label,
            subjectivity=round(self.subjectivity, 4),
            arousal=round(self.arousal, 4),
            valence=round(self.valence, 4),
            dominance=round(self.dominance, 4),
        )


NEUTRAL_FALLBACK = Sentiment(0.0, 0.5)


def label_for(polarity: float) -> str:
    if polarity <= -0.5:
        return "very_negative"
    if polarity <= -0.1:
        return "negative"
    if polarity <= 0.1:
        return "neutral"
    if polarity <= 0.5:
        return "positive"
    return "very_positive"


def analyse(text: str) -> Sentiment:
    """TextBlob's ``.sentiment`` only: its other features need NLTK corpora we do not ship."""
    if not text.strip():
        return NEUTRAL_FALLBACK
    try:
        from textblob import TextBlob

        result = TextBlob(text).sentiment
        return Sentiment(float(result.polarity), float(result.subjectivity))
    except Exception:
        log.warning("sentiment analysis failed; using neutral", exc_info=True)
        return NEUTRAL_FALLBACK
