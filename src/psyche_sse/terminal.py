"""Text for a terminal: lines that fit its width, with words kept whole.

Widths are measured in terminal cells by wcwidth (a wide character takes two, a combining
mark none, a colour code none). :class:`StreamWrapper` wraps text that arrives in pieces,
as a turn streams: it writes each word once it is complete, on the current line if it fits
and else on the next one, so nothing already written has to move; only a word longer than
a whole line is broken. :func:`wrap` does the same for a text that is already whole (the
lines around the replies), colour codes and all.
"""

from __future__ import annotations

import shutil
import unicodedata

import wcwidth

NARROWEST = 20
"""Below this many columns, lines are wrapped as if the terminal had this many."""


def terminal_width() -> int:
    """The width to wrap at: ``COLUMNS`` when set, else the terminal's, else 80."""
    return max(NARROWEST, shutil.get_terminal_size().columns)


def printable(text: str) -> str:
    """``text`` without control characters (but new lines and tabs): a model's or a person's
    text cannot move the cursor, recolour the terminal or set its title."""
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc").replace(
        "\t", " "
    )


def wrap(text: str, width: int, indent: str = "") -> str:
    """``text`` (colour codes allowed) in lines of at most ``width`` cells, each starting
    with ``indent``; its own line breaks and blank lines are kept."""
    lines: list[str] = []
    for line in wcwidth.propagate_sgr(text.split("\n")):  # a colour goes on past a break
        lines += wcwidth.wrap(
            line,
            width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_on_hyphens=False,
        ) or [""]
    return "\n".join(lines)


class StreamWrapper:
    """Wraps a text that arrives in pieces: :meth:`feed` each piece and write what it
    returns, then write what :meth:`finish` returns. The lines are at most ``width`` cells,
    each starting with ``indent``; the text's own line breaks are kept, runs of spaces
    become one, and the last line is left open (no line break after it)."""

    def __init__(self, width: int, indent: str = "") -> None:
        self.indent = indent
        self.width = max(width, wcwidth.width(indent) + 1)
        self._room = self.width - wcwidth.width(indent)  # cells for words on a line
        self._column = 0  # cells on the current line; 0: nothing written on it yet
        self._word = ""  # the word being received
        self._gap = False  # whitespace between the last word written and this one

    def feed(self, text: str) -> str:
        out: list[str] = []
        for ch in printable(text):
            if ch == "\n":
                out.append(self._place())
                out.append("\n")
                self._column, self._gap = 0, False
            elif ch.isspace():
                out.append(self._place())
                self._gap = True
            else:
                self._word += ch
                if wcwidth.width(self._word) > self._room:
                    out.append(self._break())
        return "".join(out)

    def finish(self) -> str:
        """The last word."""
        return self._place()

    def _place(self) -> str:
        """The word received so far, where it fits."""
        word, self._word = self._word, ""
        if not word:
            return ""
        cells = wcwidth.width(word)
        gap = 1 if self._gap else 0
        self._gap = False
        if self._column == 0:
            self._column = wcwidth.width(self.indent) + cells
            return self.indent + word
        if self._column + gap + cells <= self.width:
            self._column += gap + cells
            return " " * gap + word
        self._column = wcwidth.width(self.indent) + cells
        return "\n" + self.indent + word

    def _break(self) -> str:
        """A word just grown longer than a line: a whole line of it, on a line of its own;
        the rest waits for more."""
        head = ""
        for ch in self._word:
            if wcwidth.width(head + ch) > self._room:
                break
            head += ch
        head = head or self._word[0]  # a character wider than the room: alone on its line
        self._word = self._word[len(head) :]
        out = ("\n" if self._column else "") + self.indent + head
        self._column = self.width  # full: what follows starts on the next line
        self._gap = False
        return out
