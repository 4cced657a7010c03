"""Wrapping for the terminal: words kept whole while the text streams in, lines that fit
the width in terminal cells (wide characters two, colour codes none)."""

from __future__ import annotations

import wcwidth
from hypothesis import given, settings
from hypothesis import strategies as st

from psyche_sse.terminal import StreamWrapper, printable, wrap

TEXT = (
    "You are tired of pretending it does not matter, and you want the recognition badly, "
    "even if you were taught that wanting it is vain.\n\nWhat would you want from work?"
)


def streamed(text: str, width: int, indent: str = "", *, chunks: list[int] | None = None) -> str:
    """What the wrapper writes for ``text`` fed in pieces of these sizes (default: one
    character at a time)."""
    wrapper = StreamWrapper(width, indent)
    out, at = [], 0
    for size in chunks or [1] * len(text):
        out.append(wrapper.feed(text[at : at + size]))
        at += size
    out.append(wrapper.feed(text[at:]))
    return "".join(out) + wrapper.finish()


def test_words_stay_whole_and_lines_fit() -> None:
    out = streamed(TEXT, 30, "  ")
    lines = out.split("\n")
    assert all(wcwidth.width(line) <= 30 for line in lines)
    assert all(line.startswith("  ") for line in lines if line)
    assert out.split() == TEXT.split()
    assert "" in lines  # the blank line between the paragraphs is kept
    assert lines[0] == "  You are tired of pretending"  # as full as the width allows


def test_a_word_is_written_once_complete() -> None:
    wrapper = StreamWrapper(20)
    assert wrapper.feed("ti") == ""  # not yet: it may not fit where it would go
    assert wrapper.feed("red of ") == "tired of"
    assert wrapper.feed("pretend") == ""
    assert wrapper.feed("ing and ") == " pretending\nand"
    assert wrapper.finish() == ""


def test_only_a_word_longer_than_a_line_is_broken() -> None:
    url = "https://example.com/" + "a" * 50
    out = streamed(f"see {url} now", 24, "> ")
    lines = out.split("\n")
    assert lines[0] == "> see"
    assert all(wcwidth.width(line) <= 24 for line in lines)
    # The long word fills whole lines from a line of its own; the next word follows it.
    assert [len(line) for line in lines[1:-1]] == [24] * (len(lines) - 2)
    assert "".join(line[2:] for line in lines[1:]) == f"{url} now"
    # A word that fits a line of its own moves there whole.
    assert streamed("a " + "b" * 22, 24, "> ").split("\n") == ["> a", "> " + "b" * 22]


def test_wide_characters_take_two_cells() -> None:
    text = "我的老板 很生气 今天 " * 6
    out = streamed(text, 20)
    assert all(wcwidth.width(line) <= 20 for line in out.split("\n"))
    assert out.split() == text.split()


def test_colour_codes_take_no_width() -> None:
    dim = "\x1b[2m" + "State: conflict 0.06 · engagement 0.59 · diversity 0.72" + "\x1b[0m"
    lines = wrap(dim, 30).split("\n")
    assert [wcwidth.strip_sequences(line) for line in lines] == [
        "State: conflict 0.06 ·",
        "engagement 0.59 · diversity",  # 27 cells; 35 characters with its codes
        "0.72",
    ]
    assert all(line.startswith("\x1b[2m") and line.endswith("\x1b[0m") for line in lines)
    assert wrap("a\n\nb", 10, "  ") == "  a\n\n  b"


def test_control_characters_from_a_model_never_reach_the_terminal() -> None:
    evil = "fine\x1b]0;owned\x07 text\x1b[2J\r\nnext\tword\x9b31m"
    out = streamed(evil, 40)
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\x9b" not in out
    assert out == "fine]0;owned text[2J\nnext word31m"
    assert printable("a\tb\nc") == "a b\nc"


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(
        # At most 12 cells: every word fits a line, so none may be broken.
        st.text(alphabet="abcdefghij日本é\u0301", min_size=1, max_size=6),
        min_size=1,
        max_size=40,
    ),
    separators=st.lists(st.sampled_from([" ", "  ", "\n", " \n "]), min_size=40, max_size=40),
    width=st.integers(min_value=14, max_value=70),
    chunks=st.lists(st.integers(min_value=1, max_value=9), max_size=80),
)
def test_any_text_in_any_pieces(
    words: list[str], separators: list[str], width: int, chunks: list[int]
) -> None:
    text = "".join(w + s for w, s in zip(words, separators, strict=False))
    out = streamed(text, width, "  ", chunks=chunks)
    # However the text is cut into pieces, the same lines; each fits; no word is broken.
    assert out == streamed(text, width, "  ")
    assert all(wcwidth.width(line) <= width for line in out.split("\n"))
    assert out.split() == text.split()
