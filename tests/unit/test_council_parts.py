"""Sentiment thresholds, progress, who hears whom, prompts, final texts, settings."""

from __future__ import annotations

import pytest

from psyche_sse.archetypes import ARCHETYPES, BY_ID
from psyche_sse.config import Settings, load_settings
from psyche_sse.council import Network, clean_situation, final_text
from psyche_sse.errors import ConfigError, InputError
from psyche_sse.llm import LLMError, StreamBroken
from psyche_sse.progress import LengthHistory, ProgressEstimate
from psyche_sse.prompts import build_messages
from psyche_sse.sentiment import NEUTRAL_FALLBACK, Sentiment, analyse, label_for
from psyche_sse.transcript import Status


@pytest.mark.parametrize(
    ("polarity", "label"),
    [
        (-1.0, "very_negative"),
        (-0.5, "very_negative"),
        (-0.49, "negative"),
        (-0.1, "negative"),
        (-0.09, "neutral"),
        (0.1, "neutral"),
        (0.11, "positive"),
        (0.5, "positive"),
        (0.51, "very_positive"),
        (1.0, "very_positive"),
    ],
)
def test_sentiment_thresholds(polarity: float, label: str) -> None:
    assert label_for(polarity) == label


def test_sentiment_dimensions() -> None:
    s = Sentiment(0.5, 0.8)
    assert (s.arousal, s.valence, s.dominance) == (pytest.approx(0.4), 0.5, pytest.approx(0.2))
    n = Sentiment(-0.5, 0.8)
    assert n.dominance == 0.8
    assert Sentiment(0.0, 0.5) == NEUTRAL_FALLBACK


def test_textblob_sentiment_runs_offline() -> None:
    assert analyse("This is a wonderful, happy day.").label in {"positive", "very_positive"}
    assert analyse("This is terrible and awful.").polarity < 0
    assert analyse("   ") == NEUTRAL_FALLBACK


def test_progress_never_decreases_and_reaches_one_only_at_complete() -> None:
    p = ProgressEstimate(expected_chars=100)
    values = [p.add("x" * 10) for _ in range(40)]
    assert values == sorted(values)
    assert values[8] == pytest.approx(0.9)
    assert max(values) < 1.0
    assert p.complete() == 1.0


def test_length_history_averages() -> None:
    h = LengthHistory(prior=400)
    h.record(200)
    assert h.average == 300
    h.record(0)  # an empty (failed) reply teaches nothing
    assert h.average == 300


def test_normal_paths() -> None:
    net = Network()
    assert net.hears("Shadow") == ["Persona", "Self"]
    assert net.hears("Ego") == ["Persona", "Anima/Animus", "Self"]
    assert net.hears("Anima/Animus") == ["Ego"]
    net.emergency = True
    assert net.hears("Anima/Animus") == ["Shadow", "Persona", "Ego"]


def test_council_order_and_facts() -> None:
    assert [a.agent_id for a in ARCHETYPES] == ["Shadow", "Persona", "Anima/Animus", "Self", "Ego"]
    assert [a.temperature for a in ARCHETYPES] == [0.9, 0.5, 0.7, 0.6, 0.3]
    assert BY_ID["Anima/Animus"].slug == "anima-animus"


def test_prompt_has_situation_memory_and_others() -> None:
    system, user = build_messages(
        BY_ID["Ego"],
        "I lost my job",
        memory=[("before", "I said x")],
        others=[("Self", "be whole")],
    )
    assert "Ego" in system["content"]
    for part in ("I lost my job", "I said x", "Self: be whole", "question"):
        assert part in user["content"]


CUT = StreamBroken("the provider failed", error_class="IncompleteStream", partial="Half a")
STALLED = StreamBroken("the stream stalled", error_class="Timeout", partial="Half a")
FAILED = LLMError("the provider failed (InternalServerError)", error_class="InternalServerError")


@pytest.mark.parametrize(
    ("text", "status", "error", "final"),
    [
        ("All of it.", Status.OK, None, "All of it."),
        ("", Status.ERROR, FAILED, "[Shadow is experiencing technical difficulties]"),
        ("Half a", Status.ERROR, CUT, "Half a\n\n[Shadow's reply was cut off by the provider]"),
        (
            "Half a",
            Status.ERROR,
            STALLED,
            "Half a\n\n[Shadow's reply was cut off: the stream stalled]",
        ),
        ("", Status.CANCELLED, None, "[Shadow was stopped]"),
        ("Half a", Status.CANCELLED, None, "Half a"),
    ],
)
def test_final_text_keeps_the_text_and_says_what_happened(
    text: str, status: Status, error: LLMError | None, final: str
) -> None:
    assert final_text("Shadow", text, status, error) == final


@pytest.mark.parametrize("bad", ["", "   \n\t ", "\x00\x01"])
def test_empty_situation_is_refused(bad: str) -> None:
    with pytest.raises(InputError, match="empty"):
        clean_situation(bad, 100)


def test_long_situation_is_refused_and_control_chars_dropped() -> None:
    with pytest.raises(InputError, match="too long"):
        clean_situation("x" * 101, 100)
    assert clean_situation(" a\x07b\nc ", 100) == "ab\nc"


def test_settings_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    toml = tmp_path / "psyche.toml"
    toml.write_text(
        'model = "openai/gpt-4o-mini"\noffline_tps = 5\n[models]\nEgo = "ollama_chat/x"\n'
    )
    monkeypatch.setenv("PSYCHE_CONFIG", str(toml))
    monkeypatch.setenv("PSYCHE_OFFLINE_TPS", "7")
    monkeypatch.setenv("PSYCHE_MODEL_ANIMA_ANIMUS", "psyche/offline-nostream")
    s = load_settings()
    assert s.model == "openai/gpt-4o-mini"
    assert s.offline_tps == 7  # the environment wins over the file
    assert s.model_for("Ego") == "ollama_chat/x"
    assert s.model_for("Anima/Animus") == "psyche/offline-nostream"
    assert s.model_for("Shadow") == "openai/gpt-4o-mini"
    assert load_settings(model="psyche/offline").model == "psyche/offline"


def test_settings_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PSYCHE_STREAMING", "sometimes")
    with pytest.raises(ConfigError, match="streaming"):
        load_settings()
    monkeypatch.delenv("PSYCHE_STREAMING")
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [")
    monkeypatch.setenv("PSYCHE_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()
    bad.write_text("modle = 'x'")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings()


def test_defaults() -> None:
    s = Settings()
    assert (s.model, s.streaming, s.retry_attempts, s.retry_base, s.retry_cap) == (
        "psyche/offline",
        "auto",
        3,
        1.0,
        60.0,
    )
    assert s.simulated_delay == 0.1 and s.offline_tps == 30
