"""Checking a model name before a run, so a typo or a missing key is one clear line."""

from __future__ import annotations

from . import _litellm
from .errors import ModelUnavailable
from .names import OFFLINE_MODELS, is_offline

__all__ = ("check_model", "is_offline")

# Providers LiteLLM sends to a default local address when no base URL is set.
_LOCAL_DEFAULT = ("ollama", "ollama_chat")


def check_model(model: str, api_base: str | None = None) -> None:
    """Raise :class:`ModelUnavailable` when LiteLLM cannot route ``model`` or its key is unset.

    ``api_base`` is the base URL the completions will use, which stands in for the
    provider's own base-URL variable (``OLLAMA_API_BASE``, ...).
    """
    if model in OFFLINE_MODELS:
        return
    if is_offline(model):
        raise ModelUnavailable(
            f"unknown offline model {model!r}; choose one of {', '.join(OFFLINE_MODELS)}",
            error_class="NotFoundError",
        )
    lm = _litellm.litellm()
    try:
        _, provider, _, _ = lm.get_llm_provider(model)
    except Exception as exc:
        raise ModelUnavailable(
            f"unknown model {model!r}: LiteLLM cannot tell its provider "
            "(write it as provider/model, for instance openai/gpt-4o-mini)",
            error_class="NotFoundError",
        ) from exc
    env = lm.validate_environment(model, api_base=api_base)
    missing = [str(key) for key in env.get("missing_keys") or []]
    if provider in _LOCAL_DEFAULT:
        # LiteLLM falls back to the local Ollama at localhost:11434.
        missing = [key for key in missing if not key.endswith("_API_BASE")]
    if missing:
        raise ModelUnavailable(
            f"model {model!r} ({provider}) needs {', '.join(missing)} set in the environment",
            error_class="AuthenticationError",
        )
