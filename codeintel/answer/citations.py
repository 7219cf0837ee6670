"""Find ``[n]`` citations in a token stream as they appear, and resolve them to passages."""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from codeintel.answer.extractive import Passage

__all__ = ["REFUSAL", "CitationTracker", "attribute", "cited_sentences_regex", "cited_sentences_gbnf"]

_GROUP = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_TAIL = re.compile(r"\[[\d,\s]*$")  # an opening bracket whose citation may still be arriving
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


# what an answer says when its sources do not support one (grounding), the one uncited form allowed
REFUSAL = "The indexed code does not show"


def cited_sentences_regex(sources: int | Iterable[int], max_sentences: int = 6, max_chars: int = 300, min_chars: int = 12) -> str:
    """What a decoder constrained to cited answers may emit: 1..``max_sentences`` sentences of at
    ``min_chars`` to ``max_chars`` characters, each ending in one or more ``[n]`` for n in ``sources`` (a count:
    1..sources, or the numbers themselves); or one sentence starting with :data:`REFUSAL`.

    Sentence text has no brackets and no newline, and ``.``, ``!`` or ``?`` only inside a word
    (``os.path``, ``1.5``, ``a!=b``): a sentence cannot end before its citation, and the length
    bound forces the citation to come; the lower one keeps a small model from emitting bare
    "[1] [2] [3]" runs. "Text. [1]" and "text [1]." both pass. No lookarounds or
    anchors: vLLM's grammar backends compile this as is. :func:`cited_sentences_gbnf` is the same
    language for llama.cpp."""
    ref = "(?:" + "|".join(rf"\[{n}\]" for n in _numbers(sources)) + ")"
    text = r"(?:[^\[\]\n.!?]|[.!?][a-z0-9_(=])"
    cited = rf"(?:{text}{{{min_chars},{max_chars}}}[.!?]? ?{ref}+\.?){{1,{max_sentences}}}"
    return rf"(?:{cited}|{REFUSAL} {text}{{1,{max_chars}}}\.)"


def cited_sentences_gbnf(sources: int | Iterable[int], max_sentences: int = 6, max_chars: int = 300, min_chars: int = 12) -> str:
    """:func:`cited_sentences_regex` as a GBNF grammar (llama.cpp's ``grammar`` request field)."""
    refs = " | ".join(f'"[{n}]"' for n in _numbers(sources))
    return "\n".join([
        "root ::= cited | refusal",
        f"cited ::= sentence{{1,{max_sentences}}}",
        f'sentence ::= char{{{min_chars},{max_chars}}} [.!?]? " "? ref+ "."?',
        f'refusal ::= "{REFUSAL} " char{{1,{max_chars}}} "."',
        r'char ::= [^\[\]\n.!?] | [.!?] [a-z0-9_(=]',
        f"ref ::= {refs}",
    ])


def _numbers(sources: int | Iterable[int]) -> list[int]:
    numbers = sorted(set(range(1, sources + 1) if isinstance(sources, int) else sources), reverse=True)
    if not numbers or numbers[-1] < 1:
        raise ValueError("a cited answer needs at least one source, numbered from 1")
    return numbers  # longest first: "[12]" before "[1]"


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


def _code_words(text: str) -> set[str]:
    """Identifier-like words: snake_case, CamelCase, dotted names, or code in backticks (not prose)."""
    words = set()
    for token in _IDENT.findall(text):
        parts = token.split(".")
        if len(parts) > 1 or "_" in token.strip("_") or any(c.isupper() for c in token[1:]):
            words.update(p for p in parts if len(p) > 2)
    for code in re.findall(r"`([^`\n]{1,80})`", text):
        words.update(w for w in _IDENT.findall(code) if len(w) > 2)
    return {w.lower() for w in words}


def attribute(answer: str, passages: Sequence[Passage], limit: int = 3, min_shared: int = 2) -> list[Passage]:
    """Passages an answer without any ``[n]`` evidently drew on: they share >= ``min_shared``
    identifiers with it, or it names their symbol. Post-hoc, so reported as ``attributed``.

    Small models often answer correctly from the sources and forget the markers (the 0.5B CPU model
    left them out of 80 % of dev answers); pointing at the code they used is still worth showing.
    """
    said = _code_words(answer)
    if not said:
        return []
    scored = []
    for p in passages:
        symbol = p.symbol.rsplit(".", 1)[-1].lower() if p.symbol else ""
        shared = said & {w.lower() for token in _IDENT.findall(p.text) for w in token.split(".")}
        if len(shared) >= min_shared or (symbol and symbol in said):
            scored.append((len(shared) + (2 if symbol in said else 0), p))
    scored.sort(key=lambda sp: (-sp[0], sp[1].n))
    return sorted((p for _, p in scored[:limit]), key=lambda p: p.n)
