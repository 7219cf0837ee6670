"""Combining ranked lists: reciprocal rank fusion, overlap collapse, file-level aggregation."""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence, TypeVar

__all__ = ["reciprocal_rank_fusion", "collapse_overlaps", "aggregate_files"]


def reciprocal_rank_fusion(
    ranked: Mapping[str, Sequence[tuple[int, float]]],
    *,
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[int, float]]:
    """Fuse {retriever: [(id, score), ...] best first} into [(id, fused score)] best first.

    Scores are incomparable across retrievers, ranks are not. A retriever that returned nothing
    (or is missing) contributes nothing; an id listed twice by one retriever counts at its best
    rank. Ties are broken by the best single rank, then by id, so the order is deterministic.
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


class _Span(Protocol):
    uri: str
    start_line: int
    end_line: int


S = TypeVar("S", bound=_Span)


def collapse_overlaps(items: Sequence[S]) -> list[S]:
    """Drop an item whose lines overlap a better-ranked item of the same file (window chunks overlap)."""
    kept: list[S] = []
    spans: dict[str, list[tuple[int, int]]] = {}
    for item in items:
        taken = spans.setdefault(item.uri, [])
        if any(item.start_line <= end and start <= item.end_line for start, end in taken):
            continue
        taken.append((item.start_line, item.end_line))
        kept.append(item)
    return kept


def aggregate_files(items: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """[(uri, score)] per chunk, best first -> [(uri, best score)] per file, in order of first appearance."""
    files: dict[str, float] = {}
    for uri, score in items:
        if uri not in files:
            files[uri] = score
    return list(files.items())
