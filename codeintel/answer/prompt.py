"""Build the answer prompt: the best few sources, cut to the lines that matter, fitted to the model's window.

Fitting counts tokens with the generating model's own tokenizer (a ``count_tokens`` callable), never
characters. Chunks go in relevance order; overlapping or adjacent spans of one file are merged into
one passage first, so the model never sees the same lines twice and one number covers them. Each
source keeps the number of its hit, so ``[n]`` means the same thing in the answer, the hits and
the citations. A long chunk is cut to the window of lines that names the most of the question's
terms: a CPU model reads ~60 prompt tokens/s, so every line costs time before the first token.
"""

from __future__ import annotations

from typing import Callable, Sequence

import msgspec

from codeintel.answer.citations import REFUSAL
from codeintel.answer.extractive import Passage
from codeintel.config import AnswerSettings
from codeintel.retrieval.query import query_terms

__all__ = ["SYSTEM_PROMPT", "Prompt", "merge_passages", "focus", "build_prompt", "format_passage", "example_sentences"]

# Kept first and identical across requests: llama.cpp reuses its KV cache for the common prefix.
SYSTEM_PROMPT = (
    "You answer questions about a code repository using only the numbered sources the user gives. "
    "Cite every claim with the source number in square brackets, like [1] or [2][3]. "
    "Never state anything the sources do not show. If the sources do not mention what the question asks about, "
    f"reply only: {REFUSAL} <what was asked>. "
    "Be concise and specific: name the functions, classes and values involved; quote identifiers exactly."
)


# One worked exchange: small models follow a shown format far better than a described one, and with
# it the 1.5B names functions and values instead of restating the question (dev rubric, README). It
# is constant, so it sits in the KV-cached prefix and costs no prefill. Its sentences must never
# reappear in answers (eval_answers.py counts copies). A second, refused exchange was measured too:
# it refused half the absent questions but also a quarter of the answerable ones.
_RETRY = ("Sources:\n[1] net/retry.py:10-14 (retry)\n```\ndef retry(call, attempts=3):\n    for _ in range(attempts):\n"
          "        if call():\n            return True\n    return False\n```\n\nQuestion: ")
_ASK = ("\nAnswer in a few sentences; end each sentence with the [n] of the sources it uses. "
        f"If the sources do not show it, reply: {REFUSAL} ...")
_EXAMPLE = (
    {"role": "user", "content": _RETRY + "How often is a call retried?" + _ASK},
    {"role": "assistant", "content": "`retry` calls the function up to `attempts` times, three by default [1]. "
     "It returns True on the first success and False when every attempt failed [1]."},
)


def example_sentences() -> list[str]:
    return [s.strip() for s in _EXAMPLE[1]["content"].split("[1].") if s.strip()]


class Prompt(msgspec.Struct, frozen=True):
    messages: list[dict[str, str]]  # OpenAI-style chat messages
    passages: list[Passage]  # what [n] refers to: each keeps its hit number, lines cut to what was shown
    prompt_tokens: int
    dropped: int  # passages that did not fit


def merge_passages(passages: Sequence[Passage]) -> list[Passage]:
    """Merge passages of one file whose line spans overlap or touch; the first one's rank and number stay."""
    merged: list[Passage] = []
    for p in passages:
        for i, m in enumerate(merged):
            if m.uri == p.uri and p.start_line <= m.end_line + 1 and m.start_line <= p.end_line + 1:
                merged[i] = _union(m, p)
                break
        else:
            merged.append(p)
    return merged


def _union(a: Passage, b: Passage) -> Passage:
    lines: dict[int, str] = {}
    for p in (b, a):  # a wins where both have a line (they are the same file lines anyway)
        for offset, line in enumerate(p.text.split("\n")):
            lines[p.start_line + offset] = line
    start, end = min(lines), max(lines)
    text = "\n".join(lines.get(i, "") for i in range(start, end + 1))
    symbols = ", ".join(dict.fromkeys(s for s in (a.symbol, b.symbol) if s))
    return Passage(a.n, a.uri, start, end, symbols, text)


def format_passage(p: Passage) -> str:
    symbol = f" ({p.symbol})" if p.symbol else ""
    return f"[{p.n}] {p.uri}:{p.start_line}-{p.end_line}{symbol}\n```\n{p.text}\n```"


def focus(p: Passage, terms: frozenset[str], lines: int) -> Passage:
    """The ``lines`` consecutive lines of ``p`` that mention ``terms`` most (ties: the earliest, where
    a definition starts); the passage itself when it is no longer."""
    text = p.text.split("\n")
    if lines <= 0 or len(text) <= lines:
        return p
    hits = [len(terms & query_terms(line)) for line in text]
    window = sum(hits[:lines])
    best, best_sum = 0, window
    for i in range(1, len(text) - lines + 1):
        window += hits[i + lines - 1] - hits[i - 1]
        if window > best_sum:
            best, best_sum = i, window
    return msgspec.structs.replace(p, start_line=p.start_line + best, end_line=p.start_line + best + lines - 1,
                                   text="\n".join(text[best:best + lines]))


def build_prompt(
    question: str,
    passages: Sequence[Passage],
    count_tokens: Callable[[str], int],
    context_window: int,
    max_new_tokens: int,
    shape: AnswerSettings = AnswerSettings(),
    example: bool = False,
) -> Prompt:
    """The chat messages for ``question``; the passages that fit, most relevant first. ``example``:
    show a worked answer first."""
    terms = query_terms(question)
    candidates = [focus(p, terms, shape.source_lines) for p in merge_passages(passages)]
    # sources first, question last: small models attend most to the end of the prompt
    head = "Sources:\n"
    tail = f"\n\nQuestion: {question}{_ASK}"
    shown = _EXAMPLE if example else ()
    # per-message overhead of chat templates is small but real: keep a margin
    fixed = count_tokens(SYSTEM_PROMPT) + sum(count_tokens(m["content"]) for m in shown)
    budget = context_window - max_new_tokens - fixed - count_tokens(head + tail) - 48
    if budget <= 0:
        raise ValueError(f"context window {context_window} leaves no room for sources after {max_new_tokens} new tokens")
    if shape.source_tokens > 0:
        budget = min(budget, shape.source_tokens)
    chosen: list[Passage] = []
    used = 0
    for p in candidates:
        if len(chosen) == shape.max_sources:
            break
        cost = count_tokens(format_passage(p)) + 2
        if used + cost > budget:
            continue  # a smaller, less relevant passage may still fit
        chosen.append(p)
        used += cost
    user = head + "\n\n".join(format_passage(p) for p in chosen) + tail
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, *shown, {"role": "user", "content": user}]
    total = sum(count_tokens(m["content"]) for m in messages)
    return Prompt(messages=messages, passages=chosen, prompt_tokens=total, dropped=len(candidates) - len(chosen))
