"""Simulated chunking and the reasoning splitter: the text must come out exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from psyche_sse.llm.reasoning import ReasoningSplitter
from psyche_sse.llm.simulate import chunk_text, split_words


@pytest.mark.parametrize("text", ["", "one", "  lead and trail  ", "a\nb\n\nc", "It's Bob's"])
def test_chunks_concatenate_exactly(text: str) -> None:
    assert "".join(chunk_text(text, 10)) == text


def test_about_ten_word_aligned_chunks() -> None:
    text = " ".join(f"w{i}" for i in range(95))
    chunks = chunk_text(text, 10)
    assert len(chunks) == 10
    assert all(c.split()[0].startswith("w") for c in chunks)  # never cut inside a word
    assert "".join(chunks) == text


@given(st.text(), st.integers(min_value=1, max_value=40))
def test_chunking_is_lossless(text: str, n: int) -> None:
    assert "".join(chunk_text(text, n)) == text
    assert "".join(split_words(text)) == text


def run(chunks: list[str]) -> tuple[str, str]:
    splitter = ReasoningSplitter()
    answer = []
    for chunk in chunks:
        a, _ = splitter.feed(chunk)
        answer.append(a)
    a, _ = splitter.flush()
    answer.append(a)
    return "".join(answer), splitter.reasoning


def test_think_block_is_split_out() -> None:
    assert run(["<think>plan it</think>\n\nThe answer."]) == ("The answer.", "plan it")


@pytest.mark.parametrize("cut", range(1, 40))
def test_think_tags_split_across_chunks(cut: int) -> None:
    text = "<think>weigh the options</think>Answer: don't panic."
    assert run([text[:cut], text[cut:]]) == ("Answer: don't panic.", "weigh the options")


def test_character_by_character() -> None:
    text = "Before <THINKING>hidden</THINKING>after <b>bold</b> a < b"
    assert run(list(text)) == ("Before after <b>bold</b> a < b", "hidden")


def test_unclosed_block_is_reasoning_and_half_tag_is_text() -> None:
    assert run(["ok <think>never closed"]) == ("ok ", "never closed")
    assert run(["x <thi"]) == ("x <thi", "")


def test_apostrophes_and_other_text_are_untouched() -> None:
    text = "I can't say it's wrong; don't you think? <3"
    assert run([text]) == (text, "")
