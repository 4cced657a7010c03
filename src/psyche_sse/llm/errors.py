"""What can go wrong with a provider, in three kinds."""

from __future__ import annotations


class LLMError(Exception):
    """A provider call failed. ``message`` is safe to show a person; it never holds a key."""

    def __init__(self, message: str, *, error_class: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.error_class = error_class
        self.retryable = retryable


class StreamBroken(LLMError):
    """The stream failed after content had arrived; ``partial`` is the text received."""

    def __init__(self, message: str, *, error_class: str, partial: str) -> None:
        super().__init__(message, error_class=error_class)
        self.partial = partial


class ModelUnavailable(LLMError):
    """The model cannot be used at all (unknown, or no key): a setup problem, not a glitch."""
