"""WCAG 2's contrast ratio, for the tests of the page's colours (the stylesheet's and the
rendered page's): (L1 + 0.05) / (L2 + 0.05) of the two relative luminances, each the weighted
sum of the linearised sRGB channels."""

from __future__ import annotations

from coloraide import Color


def luminance(colour: Color | str) -> float:
    """WCAG 2's relative luminance (0 black, 1 white) of a colour, fitted into sRGB."""

    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(v) for v in Color(colour).convert("srgb").fit("srgb")[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: Color | str, b: Color | str) -> float:
    """The contrast ratio of two colours, from 1 (the same) to 21 (black on white)."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)
