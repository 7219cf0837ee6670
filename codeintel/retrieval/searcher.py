"""Search one published index version in this process (the CLI, tests, benchmarks).

Modes: ``dense`` (FAISS), ``bm25`` (Lucene), ``hybrid`` (both, plus files the query names, fused
by RRF) and ``hybrid+rerank`` (hybrid's top ``rerank_depth`` re-scored by the cross-encoder). The
scope is applied inside each retriever before ranking (FAISS id selector, deeper Lucene fetch) and
again in SQL at hydration, so a scoped query still returns k hits. The ranking logic itself lives
in :mod:`codeintel.retrieval.plan`, shared with the Serve ingress.
"""

from __future__ import annotations

import time

from codeintel.config import Settings
from codeintel.embedding import Embedder, create_embedder
from codeintel.rerank import Reranker, create_reranker
from codeintel.retrieval.plan import MAX_K, MAX_QUERY_CHARS, MODES, FileHit, Hit, SearchPlan, SearchRequest, SearchResult
from codeintel.retrieval.retrievers import DenseRetriever, LexicalRetriever, PathRetriever, Retriever, elapsed_ms
from codeintel.storage.catalog import Catalog
from codeintel.storage.dense import DenseIndex, set_search_threads
from codeintel.storage.layout import IndexLayout, IndexManifest
from codeintel.storage.lexical import LexicalIndex
from codeintel.storage.scope import Scope

__all__ = ["MODES", "Hit", "FileHit", "SearchResult", "Searcher", "MAX_K", "MAX_QUERY_CHARS"]



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

    def retrievers(self) -> dict[str, Retriever]:
        return {"dense": DenseRetriever(self.dense, self.embedder), "bm25": LexicalRetriever(self.lexical), "path": self.path_retriever}

    def search(self, query: str, k: int = 10, mode: str = "hybrid", scope: Scope | None = None) -> SearchResult:
        plan = SearchPlan(SearchRequest(query=query, k=k, mode=mode, scope=scope or Scope()),
                          rerank_depth=self.rerank_depth, rerank_weight=self.rerank_weight)
        t = time.perf_counter()
        allowed = None if plan.scope.empty else frozenset(self.catalog.ids_in_scope(plan.scope))
        plan.timings["scope"] = elapsed_ms(t)
        retrievers = self.retrievers()
        ids = plan.fuse([retrievers[name].retrieve(plan.prepared, plan.fetch, allowed) for name in plan.retrievers])
        t = time.perf_counter()
        rows = plan.select(self.catalog.query_by_ids(ids, plan.scope))
        plan.timings["hydrate"] = elapsed_ms(t)
        if plan.reranks and rows:
            t = time.perf_counter()
            rows = plan.apply_rerank(rows, self.reranker.score(plan.prepared.text, plan.rerank_inputs(rows)))
            plan.timings["rerank"] = elapsed_ms(t)
        return plan.result(rows, self.paths.name)

    def close(self) -> None:
        self.catalog.close()
        self.lexical.close()

