"""Ranking metrics for the retrieval evaluation (file level and chunk level)."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

__all__ = ["file_metrics", "chunk_hit", "percentile"]


def file_metrics(ranked_files: Sequence[str], gold: set[str]) -> dict[str, float]:
    """Recall@1/5/10, Acc@1 (top file is gold), MRR (first gold file) and binary nDCG@10."""
    if not gold:
        raise ValueError("no gold files")
    first = next((n for n, f in enumerate(ranked_files, 1) if f in gold), None)
    dcg = sum(1 / math.log2(n + 1) for n, f in enumerate(ranked_files[:10], 1) if f in gold)
    idcg = sum(1 / math.log2(n + 1) for n in range(1, min(len(gold), 10) + 1))
    return {
        "R@1": len(gold & set(ranked_files[:1])) / len(gold),
        "R@5": len(gold & set(ranked_files[:5])) / len(gold),
        "R@10": len(gold & set(ranked_files[:10])) / len(gold),
        "Acc@1": float(bool(ranked_files) and ranked_files[0] in gold),
        "MRR": 1 / first if first else 0.0,
        "nDCG@10": dcg / idcg,
    }


def chunk_hit(hits: Iterable, spans: Sequence[dict], k: int = 10) -> float | None:
    """1.0 when one of the top-k chunks overlaps a gold line span (None when there are no spans)."""
    if not spans:
        return None
    for n, h in enumerate(hits):
        if n >= k:
            break
        for s in spans:
            if h.uri == s["path"] and h.start_line <= s["end_line"] and s["start_line"] <= h.end_line:
                return 1.0
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
