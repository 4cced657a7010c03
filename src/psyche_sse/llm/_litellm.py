"""LiteLLM, imported lazily and offline-safe.

LiteLLM reads its model cost map from the internet at import unless told otherwise, and a
model name containing "llama-3" makes it fetch a tokenizer from a hub, blocking the event loop
for tens of seconds with no network. Both are switched off before the first import.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "LITELLM_LOG": "ERROR",
}

_module: ModuleType | None = None


def litellm() -> ModuleType:
    """The ``litellm`` module, configured, with the offline provider registered."""
    global _module
    if _module is None:
        for key, value in _OFFLINE_ENV.items():
            os.environ.setdefault(key, value)
        import litellm as module

        module.suppress_debug_info = True
        module.telemetry = False
        module.drop_params = True
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
            logging.getLogger(name).setLevel(logging.WARNING)

        from .models import OFFLINE_PROVIDER as PROVIDER
        from .offline import OfflineModel

        module.custom_provider_map = [
            *[p for p in module.custom_provider_map if p.get("provider") != PROVIDER],
            {"provider": PROVIDER, "custom_handler": OfflineModel()},
        ]
        _module = module
    return _module


async def aclose() -> None:
    """Close LiteLLM's cached async HTTP clients, if LiteLLM was ever imported."""
    if _module is None:
        return
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    await close_litellm_async_clients()
