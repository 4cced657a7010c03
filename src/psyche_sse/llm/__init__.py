"""Completions through LiteLLM: streaming, simulated streaming, retries, the offline model."""

import functools
import gc

from .client import CompletionRequest, LLMClient, Reply, ReplyStream, classify
from .errors import LLMError, ModelUnavailable, StreamBroken
from .models import check_model


def ready() -> bool:
    """Whether :func:`preload` has finished: the first turn will not wait for LiteLLM."""
    return preload.cache_info().currsize > 0


@functools.cache
def preload() -> None:
    """Import and configure LiteLLM now, and warm its lazy imports with one offline call.

    Both take a second or two between them; done here (before the event loop, or in a
    thread) they don't hold up the first turn. Once a process: LiteLLM's imports and the
    frozen objects below are the process's, so a second app in it has nothing left to warm.
    """
    from ._litellm import litellm
    from .names import OFFLINE_NOSTREAM, OFFLINE_PROVIDER

    litellm().completion(
        model=f"{OFFLINE_PROVIDER}/{OFFLINE_NOSTREAM}",
        messages=[{"role": "user", "content": "warm-up"}],
        max_retries=0,
    )
    # LiteLLM leaves some 300,000 objects that live as long as the process; left to the
    # garbage collector, each full collection walks them all and stalls the event loop for a
    # quarter of a second. Frozen, collections only look at what came after.
    gc.freeze()


__all__ = (
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
    "ready",
)
