"""Find ``[n]`` citations in a token stream as they appear, and resolve them to passages."""

from __future__ import annotations

import re
from typing import Sequence

from codeintel.answer.extractive import Passage

__all__ = ["CitationTracker"]

_GROUP = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_TAIL = re.compile(r"\[[\d,\s]*$")  # an opening bracket whose citation may still be arriving


class CitationTracker:
    """Feed text deltas; get each newly cited passage once, in order of first citation.

    Citations of numbers that name no passage are dropped and counted (a model's invention).
    """

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.by_n = {p.n: p for p in passages}
        self.cited: list[int] = []
        self.unknown = 0
        self._buffer = ""

    def feed(self, delta: str) -> list[Passage]:
        self._buffer += delta
        text = self._buffer
        hold = _TAIL.search(text)
        ready, self._buffer = (text[: hold.start()], text[hold.start():]) if hold else (text, "")
        found: list[Passage] = []
        for match in _GROUP.finditer(ready):
            for raw in match.group(1).split(","):
                n = int(raw)
                if n not in self.by_n:
                    self.unknown += 1
                elif n not in self.cited:
                    self.cited.append(n)
                    found.append(self.by_n[n])
        if len(self._buffer) > 64:  # a bracket that never closed is prose, not a citation
            self._buffer = ""
        return found

    def finish(self) -> list[Passage]:
        rest, self._buffer = self._buffer, ""
        return self.feed(rest + " ") if rest else []

    @property
    def cited_passages(self) -> list[Passage]:
        return [self.by_n[n] for n in self.cited]
