"""Build the answer prompt: numbered, deduplicated chunks fitted to the model's context window.

Fitting counts tokens with the generating model's own tokenizer (a ``count_tokens`` callable), never
characters. Chunks go in relevance order; overlapping or adjacent spans of one file are merged into
one passage first, so the model never sees the same lines twice and one number covers them.
"""

from __future__ import annotations

from typing import Callable, Sequence

import msgspec

from codeintel.answer.extractive import Passage

__all__ = ["SYSTEM_PROMPT", "Prompt", "merge_passages", "build_prompt", "format_passage"]

SYSTEM_PROMPT = (
    "You answer questions about a code repository using only the numbered sources below. "
    "Cite every claim with the source number in square brackets, like [1] or [2][3]. "
    "If the sources do not contain the answer, say so. Be concise; quote identifiers exactly."
)


# One worked exchange: small models follow a shown citation format far better than a described one.
_EXAMPLE = (
    {"role": "user", "content": "Sources:\n[1] net/retry.py:10-14 (retry)\n```\ndef retry(call, attempts=3):\n    for _ in range(attempts):\n"
     "        if call():\n            return True\n    return False\n```\n\nQuestion: How often is a call retried?\n"
     "Answer in a few sentences; end each sentence with the [n] of the sources it uses."},
    {"role": "assistant", "content": "`retry` calls the function up to `attempts` times, three by default [1]. "
     "It returns True on the first success and False when every attempt failed [1]."},
)


class Prompt(msgspec.Struct, frozen=True):
    messages: list[dict[str, str]]  # OpenAI-style chat messages
    passages: list[Passage]  # what [n] refers to, n = position + 1
    prompt_tokens: int
    dropped: int  # passages that did not fit


def merge_passages(passages: Sequence[Passage]) -> list[Passage]:
    """Merge passages of one file whose line spans overlap or touch; keep the first one's rank."""
    merged: list[Passage] = []
    for p in passages:
        for i, m in enumerate(merged):
            if m.uri == p.uri and p.start_line <= m.end_line + 1 and m.start_line <= p.end_line + 1:
                merged[i] = _union(m, p)
                break
        else:
            merged.append(p)
    return [msgspec.structs.replace(p, n=i + 1) for i, p in enumerate(merged)]


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


def build_prompt(
    question: str,
    passages: Sequence[Passage],
    count_tokens: Callable[[str], int],
    context_window: int,
    max_new_tokens: int,
) -> Prompt:
    """The chat messages for ``question``; the passages that fit, most relevant first, renumbered 1..n."""
    candidates = merge_passages(passages)
    # sources first, question last: small models attend most to the end of the prompt
    head = "Sources:\n"
    tail = f"\n\nQuestion: {question}\nAnswer in a few sentences; end each sentence with the [n] of the sources it uses."
    # per-message overhead of chat templates is small but real: keep a margin
    fixed = count_tokens(SYSTEM_PROMPT) + sum(count_tokens(m["content"]) for m in _EXAMPLE)
    budget = context_window - max_new_tokens - fixed - count_tokens(head + tail) - 48
    if budget <= 0:
        raise ValueError(f"context window {context_window} leaves no room for sources after {max_new_tokens} new tokens")
    chosen: list[Passage] = []
    used = 0
    for p in candidates:
        numbered = msgspec.structs.replace(p, n=len(chosen) + 1)
        cost = count_tokens(format_passage(numbered)) + 2
        if used + cost > budget:
            continue  # a smaller, less relevant passage may still fit
        chosen.append(numbered)
        used += cost
    user = head + "\n\n".join(format_passage(p) for p in chosen) + tail
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, *_EXAMPLE, {"role": "user", "content": user}]
    total = sum(count_tokens(m["content"]) for m in messages)
    return Prompt(messages=messages, passages=chosen, prompt_tokens=total, dropped=len(candidates) - len(chosen))
