"""The README documents every setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from psyche_sse.config import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    if name.startswith("model_") or name == "models":
        assert "PSYCHE_MODEL_<AGENT>" in README and "[models]" in README
    else:
        assert f"`PSYCHE_{name.upper()}`" in README
