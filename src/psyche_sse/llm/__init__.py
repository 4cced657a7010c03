"""Completions through LiteLLM: streaming, simulated streaming, retries, the offline model."""

from .client import CompletionRequest, LLMClient, Reply, ReplyStream, classify
from .errors import LLMError, ModelUnavailable, StreamBroken
from .models import check_model


def preload() -> None:
    """Import and configure LiteLLM now (it takes a second or two)."""
    from ._litellm import litellm

    litellm()


__all__ = [
    "CompletionRequest",
    "LLMClient",
    "LLMError",
    "ModelUnavailable",
    "Reply",
    "ReplyStream",
    "StreamBroken",
    "check_model",
    "classify",
    "preload",
]
