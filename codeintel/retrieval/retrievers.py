"""First-stage retrievers behind one small interface: (query, k, allowed ids) -> ranked ids + time."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import msgspec
import numpy as np

from codeintel.embedding import Embedder
from codeintel.retrieval.query import PreparedQuery
from codeintel.storage.catalog import Catalog
from codeintel.storage.dense import DenseIndex
from codeintel.storage.lexical import LexicalIndex

__all__ = ["RetrieverResult", "Retriever", "DenseRetriever", "LexicalRetriever", "PathRetriever", "elapsed_ms", "path_hits"]

_MAX_DEPTH = 4000


class RetrieverResult(msgspec.Struct):
    name: str
    hits: list[tuple[int, float]]  # (chunk id, score), best first
    ms: dict[str, float]  # stage -> milliseconds


@runtime_checkable
class Retriever(Protocol):
    name: str

    def retrieve(self, query: PreparedQuery, k: int, allowed: frozenset[int] | None = None) -> RetrieverResult:
        """Top k chunk ids; with ``allowed`` only those ids (the scope) may be returned."""
        ...


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a perf_counter reading), rounded for reports."""
    return round((time.perf_counter() - start) * 1000, 3)


def path_hits(ids, allowed, limit: int) -> list[tuple[int, float]]:
    """Chunks of files the query names, within the scope, capped: every one scores alike."""
    return [(i, 1.0) for i in ids if allowed is None or i in allowed][:limit]


class DenseRetriever:
    name = "dense"

    def __init__(self, index: DenseIndex, embedder: Embedder) -> None:
        self.index = index
        self.embedder = embedder

    def retrieve(self, query: PreparedQuery, k: int, allowed: frozenset[int] | None = None) -> RetrieverResult:
        t = time.perf_counter()
        vector = self.embedder.embed_queries([query.text])
        embed_ms = elapsed_ms(t)
        t = time.perf_counter()
        if allowed is not None and not allowed:
            hits: list[tuple[int, float]] = []
        else:
            selector = np.fromiter(allowed, dtype=np.int64) if allowed is not None else None
            hits = self.index.search(vector, k, allowed=selector)[0]
        return RetrieverResult(self.name, hits, {"embed": embed_ms, "dense": elapsed_ms(t)})


class LexicalRetriever:
    name = "bm25"

    def __init__(self, index: LexicalIndex) -> None:
        self.index = index

    def retrieve(self, query: PreparedQuery, k: int, allowed: frozenset[int] | None = None) -> RetrieverResult:
        t = time.perf_counter()
        if allowed is None:
            hits = self.index.search(query.lexical, k)
        else:
            # Lucene does not know the scope: fetch deeper until k in-scope hits or nothing left
            depth, hits = k * 4, []
            while True:
                raw = self.index.search(query.lexical, depth)
                hits = [(i, s) for i, s in raw if i in allowed][:k]
                if len(hits) >= k or len(raw) < depth or depth >= _MAX_DEPTH:
                    break
                depth *= 4
        return RetrieverResult(self.name, hits, {"bm25": elapsed_ms(t)})


class PathRetriever:
    """Chunks of files the query names (a traceback frame, ``pkg/module.py``, ``pkg.module.func``)."""

    name = "path"

    def __init__(self, catalog: Catalog, per_query: int = 20) -> None:
        self.catalog = catalog
        self.per_query = per_query

    def retrieve(self, query: PreparedQuery, k: int, allowed: frozenset[int] | None = None) -> RetrieverResult:
        t = time.perf_counter()
        hits: list[tuple[int, float]] = []
        if query.paths:
            ids = self.catalog.ids_for_paths(query.paths, limit=min(k, self.per_query) * 4)
            hits = path_hits(ids, allowed, min(k, self.per_query))
        return RetrieverResult(self.name, hits, {"path": elapsed_ms(t)})
