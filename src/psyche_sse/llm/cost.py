"""What a turn costs, in US dollars, from LiteLLM's price map (the copy bundled with it: the
map is never fetched, see :mod:`._litellm`).

A model the map does not know has no cost (None), never a failure. The offline model is free.
Before a turn, :func:`worst_case` is the most it can cost: its prompt's tokens (counted with
LiteLLM's bundled tokenizer, never one fetched from a hub) plus ``max_tokens`` of completion.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import ModuleType

import anyio

from . import _litellm
from .names import is_offline

log = logging.getLogger(__name__)

# A character-count estimate of a prompt's tokens when the tokenizer fails: three characters
# a token overestimates every common tokenizer on prose, which is the safe side for a budget.
_CHARS_PER_TOKEN = 3


def cost_from(
    lm: ModuleType, model: str, prompt_tokens: int, completion_tokens: int
) -> float | None:
    """The price of that many tokens of ``model`` in LiteLLM's map; None when it is not
    there."""
    # An Ollama model LiteLLM does not know is asked about on its server otherwise.
    _litellm.describe_model(lm, model)
    try:
        prompt, completion = lm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # LiteLLM raises for a model missing from its map, in several ways
        log.debug("no price for %s in LiteLLM's map", model)
        return None
    return float(prompt) + float(completion)


def counted(usage: Mapping[str, int] | None) -> bool:
    """Whether ``usage`` counts any token (a provider that sends none leaves zeros)."""
    if not usage:
        return False
    return bool(usage.get("prompt_tokens") or usage.get("completion_tokens"))


async def turn_cost(model: str | None, usage: Mapping[str, int] | None) -> float | None:
    """What a turn of ``model`` cost from its ``usage`` (prompt and completion tokens):
    0.0 for the offline model, None when the model's price or the usage is unknown."""
    if model is not None and is_offline(model):
        return 0.0
    if not model or usage is None or not counted(usage):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    lm = await _litellm.load()
    return cost_from(lm, model, prompt or 0, completion or 0)


def _estimate_tokens(
    lm: ModuleType, model: str, messages: Sequence[Mapping[str, str]] = (), text: str = ""
) -> int:
    """The tokens of a prompt (``messages``), or of a reply (``text``)."""
    try:
        if messages:
            return int(lm.token_counter(model=model, messages=list(messages)))
        return int(lm.token_counter(model=model, text=text))
    except Exception:
        log.debug("LiteLLM cannot count %s's tokens; estimating from characters", model)
        chars = sum(len(m.get("content") or "") for m in messages) + len(text)
        return chars // _CHARS_PER_TOKEN + 4 * len(messages)


async def estimate_usage(
    lm: ModuleType, model: str, messages: Sequence[Mapping[str, str]], reply: str
) -> dict[str, int]:
    """Usage counted here, for a whole reply whose provider reported none: what LiteLLM
    counts for a stream in that case (the prompt's and the reply's tokens)."""

    def count() -> dict[str, int]:
        prompt = _estimate_tokens(lm, model, messages)
        completion = _estimate_tokens(lm, model, text=reply)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    return await anyio.to_thread.run_sync(count)


async def worst_case(
    model: str, messages: Sequence[Mapping[str, str]], max_tokens: int
) -> float | None:
    """The most a turn can cost: its prompt and ``max_tokens`` of completion. 0.0 for the
    offline model; None when the model's price is unknown."""
    if is_offline(model):
        return 0.0
    lm = await _litellm.load()
    if cost_from(lm, model, 1, 1) is None:
        return None
    # Counting a long prompt takes a few milliseconds, loading the tokenizer the first time
    # a fraction of a second: not on the event loop.
    prompt = await anyio.to_thread.run_sync(_estimate_tokens, lm, model, messages)
    return cost_from(lm, model, prompt, max_tokens)
