"""The extractive answer engine: no model, the best snippets with their citations.

Used when no LLM is configured or the generator is down; it streams in the same token/citation
shape an LLM engine will, so clients handle both alike.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import msgspec

__all__ = ["Passage", "AnswerEvent", "ExtractiveEngine"]


class Passage(msgspec.Struct, frozen=True):
    n: int  # citation number, 1-based
    uri: str
    start_line: int
    end_line: int
    symbol: str
    text: str


class AnswerEvent(msgspec.Struct, frozen=True):
    kind: str  # "token" (data: text) | "usage" (data: tokens_in, model_params; once, before the first token)
    data: dict


class ExtractiveEngine:
    model_id = "extractive"

    def __init__(self, passages: int = 3, lines: int = 12) -> None:
        self.passages = passages
        self.lines = lines
        self.params = {"passages": passages, "lines": lines}

    def generate(self, question: str, passages: Sequence[Passage], usage: dict | None = None) -> Iterator[str]:
        """Text deltas; citations are derived from the "[n]" in the text, as for a model's answer.

        ``usage`` (per call) receives ``tokens_in``: no prompt here, so 0.
        """
        if usage is not None:
            usage["tokens_in"] = 0
        for p in passages[: self.passages]:
            snippet = "\n".join(p.text.split("\n")[: self.lines])
            label = f"[{p.n}] {p.uri}:{p.start_line}-{p.end_line}" + (f" ({p.symbol})" if p.symbol else "")
            yield f"{label}\n```\n{snippet}\n```\n"

    def check(self) -> None:
        if not list(self.generate("health", [Passage(1, "x", 1, 1, "", "x")])):
            raise RuntimeError("extractive engine produced nothing")
