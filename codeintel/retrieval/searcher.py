"""Search one published index version in this process (the CLI, tests, benchmarks).

Modes: ``dense`` (FAISS), ``bm25`` (Lucene), ``hybrid`` (both, plus files the query names, fused
by RRF) and ``hybrid+rerank`` (hybrid's top ``rerank_depth`` re-scored by the cross-encoder). The
scope is applied inside each retriever before ranking (FAISS id selector, deeper Lucene fetch) and
again in SQL at hydration, so a scoped query still returns k hits. The search itself is
:class:`~codeintel.retrieval.search.SearchPipeline`'s, the same the Serve ingress runs; this
module only supplies its ports from indexes opened here.
"""

from __future__ import annotations

import asyncio

import numpy as np

from codeintel.config import Settings
from codeintel.embedding import Embedder, create_embedder
from codeintel.rerank import Reranker, create_reranker
from codeintel.retrieval.plan import MAX_K, MAX_QUERY_CHARS, MODES, FileHit, Hit, SearchRequest, SearchResult
from codeintel.retrieval.query import PreparedQuery
from codeintel.retrieval.retrievers import lexical_hits
from codeintel.retrieval.search import SearchPipeline
from codeintel.storage.catalog import Catalog, ChunkRow
from codeintel.storage.dense import DenseIndex, set_search_threads
from codeintel.storage.graph import CodeGraph
from codeintel.storage.layout import IndexLayout, IndexManifest
from codeintel.storage.lexical import LexicalIndex
from codeintel.storage.scope import Scope

__all__ = ["MODES", "Hit", "FileHit", "SearchResult", "Searcher", "MAX_K", "MAX_QUERY_CHARS"]


class Searcher:
    """Holds one index version open. Embedder and reranker are injected (or made from settings on first use)."""

    shards = 1

    def __init__(self, index_dir, settings: Settings = Settings(), embedder: Embedder | None = None, reranker: Reranker | None = None) -> None:
        self.settings = settings
        self.layout = IndexLayout(index_dir)
        self.paths = self.layout.current()
        self.manifest: IndexManifest = self.paths.read_manifest()
        self.manifest.contract.require_equal(settings.embedding)
        if embedder is not None:
            self.manifest.contract.require_equal(embedder.contract)
        self._embedder = embedder
        self._reranker = reranker
        set_search_threads(1)  # one OpenMP thread per search process: concurrency comes from replicas
        self.catalog = Catalog(self.paths.catalog)
        self.dense_index = DenseIndex.load(self.paths.dense)
        self.lexical_index = LexicalIndex(self.paths.lexical, settings.lexical)
        self.pipeline = SearchPipeline(self, settings.search)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = create_embedder(self.settings.embedding, engine=self.settings.engines)
        return self._embedder

    @property
    def reranker(self) -> Reranker:
        if self._reranker is None:
            self._reranker = create_reranker(engine=self.settings.engines)
        return self._reranker

    def search(self, query: str, k: int = 10, mode: str = "hybrid", scope: Scope | None = None) -> SearchResult:
        return asyncio.run(self.pipeline.search(SearchRequest(query=query, k=k, mode=mode, scope=scope or Scope())))

    def close(self) -> None:
        self.catalog.close()
        self.lexical_index.close()

    # -- SearchPorts: this process holds exactly one version, so every call reads it ---------------
    async def pin(self) -> str:
        return self.paths.name

    async def session_scope(self, session_id: str) -> Scope | None:
        return None  # no session store in process: a CLI search names its scope

    async def scope_ids(self, scope: Scope, version: str) -> list[int]:
        return self.catalog.ids_in_scope(scope)

    async def embed(self, text: str) -> np.ndarray:
        return self.embedder.embed_queries([text])

    async def dense(self, shard: int, vector: np.ndarray, k: int, allowed: list[int] | None, version: str) -> list[tuple[int, float]]:
        return self.dense_index.search(vector, k, allowed=None if allowed is None else np.asarray(allowed, dtype=np.int64))[0]

    async def lexical(self, query: PreparedQuery, k: int, allowed: frozenset[int] | None, version: str) -> list[tuple[int, float]]:
        return lexical_hits(self.lexical_index, query, k, allowed)

    async def path_ids(self, paths: tuple[str, ...], limit: int, version: str) -> list[int]:
        return self.catalog.ids_for_paths(paths, limit)

    async def symbol_ids(self, names: tuple[str, ...], version: str) -> list[int]:
        return CodeGraph(self.catalog.query).definition_chunks(names)

    async def callee_ids(self, ids: list[int], limit: int, version: str) -> list[int]:
        return CodeGraph(self.catalog.query).callee_chunks(ids, limit)

    async def hydrate(self, ids: list[int], scope: Scope, version: str) -> list[ChunkRow]:
        return self.catalog.query_by_ids(ids, scope)

    async def rerank(self, query: str, passages: list[str]) -> list[float]:
        return [float(x) for x in self.reranker.score(query, passages)]
