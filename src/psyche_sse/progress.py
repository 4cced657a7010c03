"""A turn's progress estimate: never decreasing, 1.0 only at completion."""

from __future__ import annotations

import math

DEFAULT_EXPECTED_CHARS = 450.0
_LINEAR_UNTIL = 0.9
_CEILING = 0.99


class ProgressEstimate:
    """Progress against the expected length of the reply.

    Linear up to 90 % of the expected length; past it the estimate approaches 99 % without
    reaching it, so a long reply never shows a full bar before it is done.
    """

    def __init__(self, expected_chars: float = DEFAULT_EXPECTED_CHARS) -> None:
        self.expected = max(1.0, expected_chars)
        self.chars = 0
        self.value = 0.0

    def add(self, text: str) -> float:
        self.chars += len(text)
        ratio = self.chars / self.expected
        if ratio <= _LINEAR_UNTIL:
            estimate = ratio
        else:
            excess = ratio - _LINEAR_UNTIL
            estimate = _LINEAR_UNTIL + (_CEILING - _LINEAR_UNTIL) * (1 - math.exp(-3 * excess))
        self.value = max(self.value, min(estimate, _CEILING))
        return self.value

    def complete(self) -> float:
        self.value = 1.0
        return self.value


class LengthHistory:
    """An agent's running average reply length, the basis of its next estimate."""

    def __init__(self, prior: float = DEFAULT_EXPECTED_CHARS, weight: int = 1) -> None:
        self._total = prior * weight
        self._count = weight

    def record(self, chars: int) -> None:
        if chars > 0:
            self._total += chars
            self._count += 1

    @property
    def average(self) -> float:
        return self._total / self._count
