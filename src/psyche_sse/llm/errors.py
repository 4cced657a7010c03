"""What can go wrong with a provider, in three kinds (defined with the other errors)."""

from __future__ import annotations

from ..errors import LLMError, ModelUnavailable, StreamBroken

__all__ = ("LLMError", "ModelUnavailable", "StreamBroken")
