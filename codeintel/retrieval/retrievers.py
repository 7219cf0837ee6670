"""What the first-stage retrievers share: their result, the scoped BM25 fetch and the path cut."""

from __future__ import annotations

import time

import msgspec

from codeintel.retrieval.query import PreparedQuery
from codeintel.storage.lexical import LexicalIndex

__all__ = ["RetrieverResult", "elapsed_ms", "path_hits", "ranked_hits", "lexical_hits"]

_MAX_DEPTH = 4000


class RetrieverResult(msgspec.Struct):
    name: str
    hits: list[tuple[int, float]]  # (chunk id, score), best first
    ms: dict[str, float]  # stage -> milliseconds


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a perf_counter reading), rounded for reports."""
    return round((time.perf_counter() - start) * 1000, 3)


def path_hits(ids, allowed, limit: int) -> list[tuple[int, float]]:
    """Chunks of files the query names, within the scope, capped: every one scores alike."""
    return [(i, 1.0) for i in ids if allowed is None or i in allowed][:limit]


def ranked_hits(ids, allowed, limit: int | None = None) -> list[tuple[int, float]]:
    """Ids in the order a lookup found them, within the scope, capped, scored 1/rank."""
    kept = [i for i in ids if allowed is None or i in allowed][:limit]
    return [(i, 1.0 / n) for n, i in enumerate(kept, 1)]


def lexical_hits(index: LexicalIndex, query: PreparedQuery, k: int, allowed: frozenset[int] | None = None) -> list[tuple[int, float]]:
    """BM25's top k, within the scope (``allowed`` ids) when there is one."""
    if allowed is None:
        return index.search(query.lexical, k)
    # Lucene does not know the scope: fetch deeper until k in-scope hits or nothing left
    depth = k * 4
    while True:
        raw = index.search(query.lexical, depth)
        hits = [(i, s) for i, s in raw if i in allowed][:k]
        if len(hits) >= k or len(raw) < depth or depth >= _MAX_DEPTH:
            return hits
        depth *= 4
