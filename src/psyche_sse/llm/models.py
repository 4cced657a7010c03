"""Checking a model name before a run, so a typo or a missing key is one clear line."""

from __future__ import annotations

from . import _litellm
from .errors import ModelUnavailable

OFFLINE_PROVIDER = "psyche"
OFFLINE_STREAMING = "offline"
OFFLINE_NOSTREAM = "offline-nostream"
OFFLINE_MODELS = (
    f"{OFFLINE_PROVIDER}/{OFFLINE_STREAMING}",
    f"{OFFLINE_PROVIDER}/{OFFLINE_NOSTREAM}",
)


def is_offline(model: str) -> bool:
    return model.startswith(f"{OFFLINE_PROVIDER}/")


def check_model(model: str) -> None:
    """Raise :class:`ModelUnavailable` when LiteLLM cannot route ``model`` or its key is unset."""
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
    env = lm.validate_environment(model)
    missing = env.get("missing_keys") or []
    if missing:
        raise ModelUnavailable(
            f"model {model!r} ({provider}) needs {', '.join(missing)} set in the environment",
            error_class="AuthenticationError",
        )
