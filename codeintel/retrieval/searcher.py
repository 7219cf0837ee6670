"""Search one published index version.

Modes: ``dense`` (FAISS), ``bm25`` (Lucene), ``hybrid`` (both, plus files the query names, fused
by RRF) and ``hybrid+rerank`` (hybrid's top ``rerank_depth`` re-scored by the cross-encoder). The
scope is applied inside each retriever before ranking (FAISS id selector, deeper Lucene fetch) and
again in SQL at hydration, so a scoped query still returns k hits.
"""

from __future__ import annotations

import time

import msgspec

from codeintel.config import Settings
from codeintel.embedding import Embedder, create_embedder
from codeintel.errors import InputError
from codeintel.rerank import Reranker, create_reranker
from codeintel.retrieval.fusion import aggregate_files, collapse_overlaps, reciprocal_rank_fusion
from codeintel.retrieval.query import is_auxiliary_path, prepare_query
from codeintel.retrieval.retrievers import DenseRetriever, LexicalRetriever, PathRetriever, Retriever, RetrieverResult
from codeintel.storage.catalog import Catalog, ChunkRow
from codeintel.storage.dense import DenseIndex, set_search_threads
from codeintel.storage.layout import IndexLayout, IndexManifest
from codeintel.storage.lexical import LexicalIndex
from codeintel.storage.scope import Scope, validate_scope

__all__ = ["MODES", "Hit", "FileHit", "SearchResult", "Searcher", "MAX_K", "MAX_QUERY_CHARS"]

MODES: tuple[str, ...] = ("dense", "bm25", "hybrid", "hybrid+rerank")
MAX_K = 200
MAX_QUERY_CHARS = 20_000
# RRF weights; "path" (files the query names) is a hint, not a retriever of its own standing
FUSION_WEIGHTS = {"dense": 1.0, "bm25": 1.0, "path": 0.5}
# For a pasted bug report, tests/docs/changelogs echo the report's words but are rarely the place to
# change: their fused scores are scaled by this before the cut.
REPORT_AUXILIARY_FACTOR = 0.5


class Hit(msgspec.Struct, frozen=True):
    id: int
    uri: str
    start_line: int
    end_line: int
    lang: str
    symbol: str
    score: float
    text: str
    ranks: dict[str, int]  # 1-based rank of this chunk in each first-stage retriever that found it


class FileHit(msgspec.Struct, frozen=True):
    uri: str
    score: float
    best_chunk: int  # index into hits


class SearchResult(msgspec.Struct):
    query: str
    mode: str
    hits: list[Hit]
    files: list[FileHit]
    timings_ms: dict[str, float]
    retrievers: dict[str, int]  # hits per retriever
    version: str


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


class Searcher:
    """Holds one index version open. Embedder and reranker are injected (or made from settings)."""

    def __init__(
        self,
        index_dir,
        settings: Settings = Settings(),
        embedder: Embedder | None = None,
        reranker: Reranker | None = None,
        rerank_depth: int = 30,
        rerank_weight: float = 0.5,
    ) -> None:
        self.settings = settings
        self.layout = IndexLayout(index_dir)
        self.paths = self.layout.current()
        self.manifest: IndexManifest = self.paths.read_manifest()
        self.manifest.contract.require_equal(settings.embedding)
        if embedder is not None:
            self.manifest.contract.require_equal(embedder.contract)
        self._embedder = embedder
        self._reranker = reranker
        self.rerank_depth = rerank_depth
        self.rerank_weight = rerank_weight
        set_search_threads(1)  # one OpenMP thread per search process: concurrency comes from replicas
        self.catalog = Catalog(self.paths.catalog)
        self.dense = DenseIndex.load(self.paths.dense)
        self.lexical = LexicalIndex(self.paths.lexical, settings.lexical)
        self.path_retriever = PathRetriever(self.catalog)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = create_embedder(self.settings.embedding)
        return self._embedder

    @property
    def reranker(self) -> Reranker:
        if self._reranker is None:
            self._reranker = create_reranker()
        return self._reranker

    def _retrievers(self, mode: str) -> list[Retriever]:
        dense = DenseRetriever(self.dense, self.embedder)
        lexical = LexicalRetriever(self.lexical)
        return {"dense": [dense], "bm25": [lexical]}.get(mode, [dense, lexical, self.path_retriever])

    def search(self, query: str, k: int = 10, mode: str = "hybrid", scope: Scope | None = None) -> SearchResult:
        query = (query or "").strip()
        if not query:
            raise InputError("empty query")
        if len(query) > MAX_QUERY_CHARS:
            raise InputError(f"query longer than {MAX_QUERY_CHARS} characters")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InputError(f"k must be an integer between 1 and {MAX_K}")
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        scope = scope or Scope()
        validate_scope(scope)
        timings: dict[str, float] = {}

        t = time.perf_counter()
        prepared = prepare_query(query)
        allowed = None if scope.empty else frozenset(self.catalog.ids_in_scope(scope))
        timings["prepare"] = _ms(t)

        rerank = mode == "hybrid+rerank"
        depth = max(k, self.rerank_depth) if rerank else k
        fetch = min(MAX_K * 2, max(depth * 2, 50))  # room for overlap collapse and retriever disagreement
        results: list[RetrieverResult] = [r.retrieve(prepared, fetch, allowed) for r in self._retrievers(mode)]
        for result in results:
            timings.update(result.ms)
        ranked = {r.name: r.hits for r in results}

        t = time.perf_counter()
        fused = reciprocal_rank_fusion(ranked, weights=FUSION_WEIGHTS) if len(ranked) > 1 else next(iter(ranked.values()))
        timings["fuse"] = _ms(t)

        t = time.perf_counter()
        rows = collapse_overlaps(self.catalog.query_by_ids([i for i, _ in fused[: depth * 2]], scope))
        timings["hydrate"] = _ms(t)
        scores = dict(fused)
        demote = prepared.is_report and len(ranked) > 1
        if demote:
            rows, scores = _demote_auxiliary(rows, scores)
        rows = rows[:depth]

        if rerank and rows:
            # The cross-encoder (trained on web questions, not code) is one more ranked list, fused
            # with the hybrid order by RRF at half weight: alone, or at equal weight, it loses to
            # hybrid on code; at 0.5 it gains (dev flask qa: MRR .851 -> .870, R@10 .822 -> .858).
            t = time.perf_counter()
            logits = self.reranker.score(prepared.text, [_rerank_text(row) for row in rows])
            by_rerank = sorted(((row.id, float(x)) for row, x in zip(rows, logits)), key=lambda kv: -kv[1])
            hybrid_order = [(row.id, scores[row.id]) for row in rows]
            final = reciprocal_rank_fusion({"hybrid": hybrid_order, "rerank": by_rerank}, weights={"rerank": self.rerank_weight})
            by_id = {row.id: row for row in rows}
            rows = [by_id[i] for i, _ in final]
            scores = dict(final)
            if demote:
                rows, scores = _demote_auxiliary(rows, scores)
            timings["rerank"] = _ms(t)

        ranks = {r.name: {id_: n for n, (id_, _) in enumerate(r.hits, 1)} for r in results}
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
        files = [FileHit(uri, score, next(n for n, h in enumerate(hits) if h.uri == uri)) for uri, score in aggregate_files([(h.uri, h.score) for h in hits])]
        timings["total"] = round(sum(timings.values()), 3)
        return SearchResult(
            query=query,
            mode=mode,
            hits=hits,
            files=files,
            timings_ms=timings,
            retrievers={r.name: len(r.hits) for r in results},
            version=self.paths.name,
        )

    def close(self) -> None:
        self.catalog.close()
        self.lexical.close()


def _demote_auxiliary(rows: list[ChunkRow], scores: dict[int, float]) -> tuple[list[ChunkRow], dict[int, float]]:
    scaled = {row.id: scores[row.id] * (REPORT_AUXILIARY_FACTOR if is_auxiliary_path(row.uri) else 1.0) for row in rows}
    return sorted(rows, key=lambda row: -scaled[row.id]), scaled


def _rerank_text(row: ChunkRow) -> str:
    head = f"{row.uri} {row.symbol}".strip()
    return f"{head}\n{row.context}\n{row.text}" if row.context else f"{head}\n{row.text}"
