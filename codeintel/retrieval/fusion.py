"""Reciprocal rank fusion: combine ranked lists by rank, not by incomparable scores."""

from __future__ import annotations

from typing import Mapping, Sequence

__all__ = ["reciprocal_rank_fusion"]


def reciprocal_rank_fusion(
    ranked: Mapping[str, Sequence[tuple[int, float]]],
    *,
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[int, float]]:
    """Fuse {retriever: [(id, score), ...] best first} into [(id, fused score)] best first.

    A retriever that returned nothing (or is missing) simply contributes nothing; an id listed twice
    by one retriever counts at its best rank. Ties are broken by the best single rank, then by id,
    so the order is deterministic.
    """
    fused: dict[int, float] = {}
    best_rank: dict[int, int] = {}
    for name, hits in ranked.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        seen: set[int] = set()
        for rank, (id_, _score) in enumerate(hits, 1):
            if id_ in seen:
                continue
            seen.add(id_)
            fused[id_] = fused.get(id_, 0.0) + weight / (k + rank)
            best_rank[id_] = min(best_rank.get(id_, rank), rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], best_rank[kv[0]], kv[0]))
