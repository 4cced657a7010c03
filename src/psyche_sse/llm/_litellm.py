"""LiteLLM, imported lazily and offline-safe.

LiteLLM reads its model cost map from the internet at import unless told otherwise, and a
model name containing "llama-3" makes it fetch a tokenizer from a hub, blocking the event loop
for tens of seconds with no network. Both are switched off before the first import.

For an Ollama model missing from its cost map, LiteLLM asks the Ollama server about the model
(``/api/show``) around every call, with a blocking request from inside the event loop, and
some of those asks ignore the ``api_base`` and go to ``localhost:11434``.
:func:`describe_model` tells it what it needs up front, so it never asks.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from types import MappingProxyType, ModuleType

import anyio

from .names import OFFLINE_PROVIDER

_OFFLINE_ENV = MappingProxyType(
    {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "LITELLM_LOG": "ERROR",
    }
)

# Providers whose model information LiteLLM fetches from the server itself.
_SELF_DESCRIBING = ("ollama", "ollama_chat")


@functools.cache
def litellm() -> ModuleType:
    """The ``litellm`` module, configured, with the offline provider registered.

    Done on the first call, once for the process: LiteLLM's settings and its provider
    registry are the process's own. Two first calls at once (a warm-up thread and a turn)
    both wait on Python's import lock, then both configure it the same way, harmlessly.
    """
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    # Pydantic's remark on LiteLLM's own type hints (its Ollama module, on first use).
    warnings.filterwarnings(
        "ignore", message=r"Items? .* `ReadOnly` qualifier", category=UserWarning
    )
    import litellm as module

    module.suppress_debug_info = True
    module.telemetry = False
    module.drop_params = True
    # Token counts (a budget's estimate of a prompt) use the tokenizer bundled with LiteLLM.
    module.disable_hf_tokenizer_download = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from .offline import OfflineModel

    module.custom_provider_map = [
        *[p for p in module.custom_provider_map if p.get("provider") != OFFLINE_PROVIDER],
        {"provider": OFFLINE_PROVIDER, "custom_handler": OfflineModel()},
    ]
    configured: ModuleType = module
    return configured


def loaded() -> bool:
    """Whether :func:`litellm` has returned once: it now returns at once."""
    return litellm.cache_info().currsize > 0


async def load() -> ModuleType:
    """:func:`litellm` for the event loop: the first import (seconds) runs in a worker thread,
    or waits there for the one already under way."""
    if loaded():
        return litellm()
    return await anyio.to_thread.run_sync(litellm)


def describe_model(lm: ModuleType, model: str) -> None:
    """Give LiteLLM static information about an Ollama model it does not know."""
    provider, _, name = model.partition("/")
    if provider in _SELF_DESCRIBING and name:
        known = {key.lower() for key in lm.model_cost}
        variants = {model, name, *(f"{p}/{name}" for p in _SELF_DESCRIBING)}
        if not any(v.lower() in known for v in variants):
            lm.model_cost[model] = {
                "litellm_provider": provider,
                "mode": "chat",
                "input_cost_per_token": 0.0,
                "output_cost_per_token": 0.0,
            }


def provider_finished(stream: object) -> bool:
    """Whether the provider ended a finished stream with a finish reason of its own.

    At the end of a stream LiteLLM hands out a last chunk with ``finish_reason="stop"``
    whether or not the provider sent one, so a reply the provider cut off cleanly (no
    finish reason, no ``[DONE]``; for Ollama no ``"done": true``) looks finished. Its stream
    wrapper keeps what the provider really said. An object without that record (not
    LiteLLM's wrapper) is taken at its word.
    """
    if not hasattr(stream, "received_finish_reason"):
        return True
    said = (
        getattr(stream, "received_finish_reason", None),
        getattr(stream, "intermittent_finish_reason", None),
    )
    return any(reason is not None for reason in said)


async def aclose() -> None:
    """Close LiteLLM's cached async HTTP clients, if LiteLLM was ever imported."""
    if not loaded():
        return
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    await close_litellm_async_clients()
