"""Where a streamed response is cut into windows, and what text each window's check covers.

A pure rule over the text as it arrives (no checks, no clocks): :meth:`Windows.push` appends
a piece and returns the windows it completed; :meth:`Windows.close` returns the remainder.
Offsets are characters from the start of the response. Only the text a later window can still
cover is kept, so a long answer costs memory of its recent windows, not of the whole answer.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from guard_plugin.policy import Streaming

__all__ = ["Window", "Windows", "count_units"]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
# a unit: one CJK character, a run of other word characters, or one other non-space character
_UNIT = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")
# the end of a sentence: terminal punctuation (with closing quotes or brackets) before a space,
# or a line break
_SENTENCE_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f][\"'\u201d\u2019)\]]*(?=\s)|\n")


def count_units(text: str, unit: str = "tokens") -> int:
    """How many units ``text`` holds (see :class:`~guard_plugin.policy.Streaming`)."""
    return len(text) if unit == "chars" else sum(1 for _ in _UNIT.finditer(text))


@dataclass(frozen=True)
class Window:
    """One check of a stream: it covers ``[start, end)``, of which ``[new_from, end)`` is text
    no earlier window covered (what passing it releases). ``final``: the stream's last."""

    start: int
    new_from: int
    end: int
    final: bool = False


class Windows:
    """Cuts a response into windows as it streams (the rule of :class:`Streaming`)."""

    def __init__(self, settings: Streaming) -> None:
        self.settings = settings
        self._base = 0  # offset of self._buf[0] in the response
        self._buf = ""
        self._cut = 0  # end of the last window
        self._start = 0  # where the next window's check starts
        # window edges since _start, with the units from _start to each
        self._edges: deque[tuple[int, int]] = deque()
        self._units = 0  # units from _start to _cut
        self.count = 0  # windows cut so far
        self.length = 0  # characters pushed so far

    def text(self, start: int, end: int) -> str:
        """The response's text in ``[start, end)`` (still kept: from the oldest window start)."""
        assert start >= self._base, "text before the kept window was dropped"
        return self._buf[start - self._base : end - self._base]

    def push(self, piece: str) -> list[Window]:
        """Append ``piece``; the windows it completed, in order."""
        if not piece:
            return []
        self._buf += piece
        self.length += len(piece)
        out = []
        while (w := self._next()) is not None:
            out.append(w)
        return out

    def close(self) -> Window | None:
        """The rest of the response as the final window, or None when nothing but white space
        is left after the last window."""
        rest = self.text(self._cut, self.length)
        if not rest.strip():
            return None
        w = Window(self._start, self._cut, self.length, final=True)
        self._cut = self.length
        self.count += 1
        return w

    # -- the rule --------------------------------------------------------------------------------

    def _next(self) -> Window | None:
        s = self.settings
        size = s.first_chunk_size if self.count == 0 else s.chunk_size
        pending = self.text(self._cut, self.length)
        edge = _edge(pending, size, s.unit)
        if edge is None:
            return None
        units = count_units(pending[:edge], s.unit)
        w = Window(self._start, self._cut, self._cut + edge)
        self._cut = w.end
        self.count += 1
        self._units += units
        self._edges.append((self._cut, self._units))
        self._slide()
        return w

    def _slide(self) -> None:
        """Move the next check's start forward once the covered text passes twice
        ``context_size`` units, keeping at least ``context_size`` units before the next
        window (at a window edge, so checks stay prefixes of each other in between)."""
        keep = self.settings.context_size
        if self._units <= 2 * keep:
            return
        while len(self._edges) > 1 and self._units - self._edges[1][1] >= keep:
            self._edges.popleft()
        pos, before = self._edges[0]
        if self._units - before < keep or pos == self._start:
            return
        self._start = pos
        self._units -= before
        self._edges = deque((p, u - before) for p, u in self._edges if p > pos)
        drop = self._start - self._base
        if drop > 0:
            self._buf = self._buf[drop:]
            self._base = self._start


def _edge(pending: str, size: int, unit: str) -> int | None:
    """Where the next window ends in ``pending`` (an offset), or None to wait for more text.

    The window holds ``size`` units; it ends at the last sentence end in its second half,
    else at the end of its last whole word, else (one long word) at ``size``. A window ends
    only where the next character is known, so a word is never cut while it is still
    arriving."""
    if unit == "chars":
        if len(pending) <= size:
            return None
        limit = size
        half = size // 2
    else:
        limit = -1
        half_pos = -1
        for i, m in enumerate(_UNIT.finditer(pending)):
            if i == (size + 1) // 2 - 1:
                half_pos = m.end()
            if i == size - 1:
                limit = m.end()
                break
        if limit < 0 or limit >= len(pending):
            return None
        half = max(half_pos, 1)
    sentence = -1
    for m in _SENTENCE_END.finditer(pending, 0, limit + 1):
        if m.end() >= half:
            sentence = m.end()
    if sentence > 0:
        return sentence
    for i in range(limit, max(half, 1) - 1, -1):
        if _word_edge(pending, i):
            return i
    return limit


def _word_edge(text: str, i: int) -> bool:
    """Whether offset ``i`` lies between two words (or after a CJK character)."""
    if i <= 0 or i >= len(text):
        return False
    before, after = text[i - 1], text[i]
    if after.isspace() or before.isspace():
        return not before.isspace() or not after.isspace()
    return not (before.isalnum() and after.isalnum()) or bool(re.match(f"[{_CJK}]", before))
