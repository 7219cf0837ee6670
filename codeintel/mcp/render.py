"""Compact, token-budgeted text for agents: locations always, code text as far as the budget allows.

An agent pays for every token a tool returns, so results are plain text (no JSON escaping of code),
every hit keeps its ``path:start-end`` and symbol, and code is cut at line boundaries with a note
saying how to get the rest. Tokens are estimated at 4 characters each, which is close for code
under common tokenizers and needs no tokenizer in this process.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CHARS_PER_TOKEN", "fit_lines", "location", "render_hits", "render_chunks", "render_lines", "render_list"]

CHARS_PER_TOKEN = 4
_MIN_SNIPPET_CHARS = 60  # below this a snippet is dropped rather than shown as a stub
_NOTE = "  ... {n} more lines"


def location(hit: dict) -> str:
    """``path:start-end  symbol`` (the symbol only when there is one)."""
    symbol = f"  {hit['symbol']}" if hit.get("symbol") else ""
    return f"{hit['uri']}:{hit['start_line']}-{hit['end_line']}{symbol}"


def fit_lines(text: str, max_chars: int) -> tuple[str, int]:
    """``text`` cut to whole lines within ``max_chars``; returns it and how many lines were dropped."""
    lines = text.rstrip("\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    kept: list[str] = []
    used = 0
    for line in lines:
        line = line.rstrip()
        if used + len(line) + 1 > max_chars:
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept), len(lines) - len(kept)


def render_hits(hits: Sequence[dict], max_tokens: int, header: str, *, even: bool = True, more_hint: str = "") -> tuple[str, list[dict]]:
    """Hits as ``[n] path:start-end  symbol`` lines, each followed by as much of its text as fits.

    ``even``: share the budget for code evenly (search results), else give it in order (a file's
    chunks, read top to bottom). The text stays within ``max_tokens`` (only the header can exceed
    it). Returns the text and, per hit shown, its fields with the text as shown plus ``omitted_lines``.
    """
    footer_room = 80 + len(more_hint)
    budget = max_tokens * CHARS_PER_TOKEN - len(header) - 1 - footer_room
    heads = [f"[{n}] {location(h)}" + (f"  score={h['score']:.3f}" if h.get("score") is not None else "") for n, h in enumerate(hits, 1)]
    room = [len(x) + 2 + len(_NOTE.format(n=99_999)) for x in heads]  # head, separator, a "more lines" note
    shown = len(hits)
    while shown and sum(room[:shown]) > budget:
        shown -= 1
    code_budget = budget - sum(room[:shown])
    blocks: list[str] = []
    shown_hits: list[dict] = []
    cut = False
    for i in range(shown):
        hit = hits[i]
        # an even share, but never so thin that top hits go without code while later ones get some
        share = max(code_budget // (shown - i), min(code_budget, 2 * _MIN_SNIPPET_CHARS)) if even else code_budget
        full = (hit.get("text") or "").rstrip("\n")
        text, dropped = fit_lines(full, share) if share >= _MIN_SNIPPET_CHARS else ("", len(full.split("\n")) if full else 0)
        code_budget -= len(text) + (1 if text else 0)
        block = heads[i] + ("\n" + text if text else "")
        if dropped:
            block += "\n" + _NOTE.format(n=dropped)
            cut = True
        blocks.append(block)
        shown_hits.append({**{k: v for k, v in hit.items() if k != "text"}, "text": text, "omitted_lines": dropped})
    out = header + "\n" + "\n\n".join(blocks)
    if shown < len(hits):
        out += f"\n\n({len(hits) - shown} more hits not shown: raise max_tokens or lower k)"
    elif cut and more_hint:
        out += f"\n\n({more_hint})"
    return out, shown_hits


def render_chunks(chunks: Sequence[dict], max_tokens: int, header: str) -> tuple[str, list[dict]]:
    """A file's indexed chunks in line order, the budget spent top to bottom."""
    return render_hits(chunks, max_tokens, header, even=False, more_hint="cut at max_tokens: read_file shows any line range")


def render_lines(lines: Sequence[str], start_line: int, max_tokens: int, header: str) -> tuple[str, int]:
    """Numbered lines from ``start_line`` within the budget; returns the text and the last line shown."""
    budget = max_tokens * CHARS_PER_TOKEN - len(header) - 1
    width = len(str(start_line + len(lines) - 1))
    out: list[str] = []
    last = start_line - 1
    for n, line in enumerate(lines, start_line):
        row = f"{n:>{width}}  {line.rstrip()}"
        if budget - len(row) - 1 < 0:
            if not out:  # one line longer than the whole budget (minified code): show its start
                out.append(row[: max(0, budget - 30)] + " ... (line cut at max_tokens)")
                last = n
            break
        budget -= len(row) + 1
        out.append(row)
        last = n
    return header + "\n" + "\n".join(out), last


def render_list(header: str, lines: list[str], max_tokens: int) -> tuple[str, int]:
    """``header`` and as many whole ``lines`` as fit in ``max_tokens``, saying how many were left out."""
    budget, used, shown = max_tokens * CHARS_PER_TOKEN - len(header) - 80, 0, 0
    for line in lines:
        if used + len(line) + 1 > budget:
            break
        used += len(line) + 1
        shown += 1
    text = "\n".join([header, *lines[:shown]])
    if shown < len(lines):
        text += f"\n... {len(lines) - shown} more cut at max_tokens: raise max_tokens or narrow the scope"
    return text, shown
