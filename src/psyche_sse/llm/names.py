"""The embedded offline model's names: which model names it answers to.

A leaf, so the provider (:mod:`.offline`), its registration (:mod:`._litellm`) and the model
checks (:mod:`.models`) all read the names from here without importing one another.
"""

from __future__ import annotations

OFFLINE_PROVIDER = "psyche"
OFFLINE_STREAMING = "offline"
OFFLINE_NOSTREAM = "offline-nostream"
OFFLINE_MODELS = (
    f"{OFFLINE_PROVIDER}/{OFFLINE_STREAMING}",
    f"{OFFLINE_PROVIDER}/{OFFLINE_NOSTREAM}",
)


def is_offline(model: str) -> bool:
    return model.startswith(f"{OFFLINE_PROVIDER}/")
