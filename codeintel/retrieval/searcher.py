"""Search one published index version: dense (FAISS), BM25 (Lucene) or both fused by RRF."""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from codeintel.config import Settings
from codeintel.embedding import Embedder, create_embedder
from codeintel.errors import InputError
from codeintel.retrieval.fusion import reciprocal_rank_fusion
from codeintel.storage.catalog import Catalog
from codeintel.storage.dense import DenseIndex
from codeintel.storage.layout import IndexLayout, IndexManifest
from codeintel.storage.lexical import LexicalIndex
from codeintel.storage.scope import Scope, validate_scope

__all__ = ["Mode", "MODES", "Hit", "SearchResult", "Searcher", "MAX_K", "MAX_QUERY_CHARS"]

Mode = Literal["dense", "bm25", "hybrid"]
MODES: tuple[str, ...] = ("dense", "bm25", "hybrid")
MAX_K = 200
MAX_QUERY_CHARS = 20_000


class Hit(msgspec.Struct, frozen=True):
    id: int
    uri: str
    start_line: int
    end_line: int
    lang: str
    symbol: str
    score: float
    text: str
    ranks: dict[str, int]  # rank (1-based) of this chunk in each retriever that found it


class SearchResult(msgspec.Struct):
    query: str
    mode: str
    hits: list[Hit]
    timings_ms: dict[str, float]
    version: str


class Searcher:
    """Holds one index version open. The embedder is injected (or made from the contract)."""

    def __init__(self, index_dir, settings: Settings = Settings(), embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.layout = IndexLayout(index_dir)
        self.paths = self.layout.current()
        self.manifest: IndexManifest = self.paths.read_manifest()
        self.manifest.contract.require_equal(settings.embedding)
        self._embedder = embedder
        if embedder is not None:
            self.manifest.contract.require_equal(embedder.contract)
        self.catalog = Catalog(self.paths.catalog)
        self.dense = DenseIndex.load(self.paths.dense)
        self.lexical = LexicalIndex(self.paths.lexical, settings.lexical)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = create_embedder(self.settings.embedding)
        return self._embedder

    def search(self, query: str, k: int = 10, mode: str = "hybrid", scope: Scope | None = None) -> SearchResult:
        query = (query or "").strip()
        if not query:
            raise InputError("empty query")
        if len(query) > MAX_QUERY_CHARS:
            raise InputError(f"query longer than {MAX_QUERY_CHARS} characters")
        if not 1 <= k <= MAX_K:
            raise InputError(f"k must be between 1 and {MAX_K}")
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        scope = scope or Scope()
        validate_scope(scope)
        # over-fetch so that scope filtering at hydration still leaves k hits in most cases
        depth = min(MAX_K * 5, k * (10 if not scope.empty else 3))
        timings: dict[str, float] = {}
        ranked: dict[str, list[tuple[int, float]]] = {}
        if mode in ("dense", "hybrid"):
            t = time.perf_counter()
            vector = self.embedder.embed_queries([query])
            timings["embed"] = _ms(t)
            t = time.perf_counter()
            ranked["dense"] = self.dense.search(vector, depth)[0]
            timings["dense"] = _ms(t)
        if mode in ("bm25", "hybrid"):
            t = time.perf_counter()
            ranked["bm25"] = self.lexical.search(query, depth)
            timings["bm25"] = _ms(t)
        t = time.perf_counter()
        fused = reciprocal_rank_fusion(ranked) if mode == "hybrid" else ranked[mode]
        ranks = {name: {id_: r for r, (id_, _) in enumerate(hits, 1)} for name, hits in ranked.items()}
        timings["fuse"] = _ms(t)
        t = time.perf_counter()
        rows = self.catalog.query_by_ids([id_ for id_, _ in fused], scope)
        timings["hydrate"] = _ms(t)
        scores = dict(fused)
        hits = [
            Hit(
                id=row.id,
                uri=row.uri,
                start_line=row.start_line,
                end_line=row.end_line,
                lang=row.lang,
                symbol=row.symbol,
                score=round(float(scores[row.id]), 6),
                text=row.text,
                ranks={name: r[row.id] for name, r in ranks.items() if row.id in r},
            )
            for row in rows[:k]
        ]
        timings["total"] = round(sum(timings.values()), 3)
        return SearchResult(query=query, mode=mode, hits=hits, timings_ms=timings, version=self.paths.name)

    def close(self) -> None:
        self.catalog.close()
        self.lexical.close()


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
