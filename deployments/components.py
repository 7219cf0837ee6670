"""The graph's back-end deployments. Each holds one engine and forwards to codeintel logic.

Engines are made from the index directory by default and may be injected (tests, GPU variants).
Every deployment implements ``check_health`` so Serve restarts a broken replica, and ``info`` for
readiness.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ray import serve

from codeintel.answer.extractive import AnswerEvent, ExtractiveEngine, Passage
from codeintel.answer.llm import LlamaEngine
from codeintel.config import Settings
from codeintel.embedding import Embedder, create_embedder
from codeintel.errors import ModelUnavailableError
from codeintel.rerank import Reranker, create_reranker
from codeintel.retrieval.query import PreparedQuery
from codeintel.retrieval.retrievers import LexicalRetriever as LexicalEngine
from codeintel.retrieval.retrievers import RetrieverResult
from codeintel.service.scopes import create_registry
from codeintel.storage.catalog import Catalog, ChunkRow
from codeintel.storage.chunks import embeddings_of, read_chunk_table
from codeintel.storage.dense import DenseIndex, set_search_threads
from codeintel.storage.layout import IndexLayout
from codeintel.storage.lexical import LexicalIndex
from codeintel.storage.scope import Scope

__all__ = ["EmbedderDeployment", "FaissShard", "LexicalRetriever", "Hydrator", "RerankerDeployment", "ScopeStore", "Generator"]


def _current(index_dir: str):
    paths = IndexLayout(index_dir).current()
    return paths, paths.read_manifest()


@serve.deployment(name="Embedder", ray_actor_options={"num_cpus": 0.25})
class EmbedderDeployment:
    def __init__(self, settings: Settings | None = None, engine: Embedder | None = None) -> None:
        self.settings = settings or Settings()
        self.engine = engine or create_embedder(self.settings.embedding)
        self.engine.embed_queries(["warm up"])  # load the model before taking traffic

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        return self.engine.embed_queries(queries)

    def info(self) -> dict:
        return {"dim": self.engine.contract.dim, "model_id": self.engine.contract.model_id}

    def check_health(self) -> None:
        if self.engine.embed_queries(["health"]).shape != (1, self.engine.contract.dim):
            raise RuntimeError("embedder returned a wrong shape")


class _Reloadable:
    """``user_config: {index_dir: ...}`` in serve_config.yaml points a running replica at another index."""

    index_dir: str

    def reconfigure(self, user_config: dict) -> None:
        index_dir = (user_config or {}).get("index_dir")
        if index_dir and index_dir != self.index_dir:
            self.load(index_dir)

    def load(self, index_dir: str) -> None:
        raise NotImplementedError


@serve.deployment(name="FaissShard", ray_actor_options={"num_cpus": 0.25})
class FaissShard(_Reloadable):
    """Shard ``shard`` of ``num_shards``: the vectors whose chunk id % num_shards == shard."""

    def __init__(self, index_dir: str, shard: int = 0, num_shards: int = 1, use_gpu: bool | None = None) -> None:
        set_search_threads(1)
        self.shard, self.num_shards, self.use_gpu = shard, num_shards, use_gpu
        self.load(index_dir)

    def load(self, index_dir: str) -> None:
        paths, manifest = _current(index_dir)
        if self.num_shards == 1:
            index = DenseIndex.load(paths.dense, use_gpu=self.use_gpu)
        else:
            table = read_chunk_table(paths.chunks, columns=["id", "embedding"])
            ids = table.column("id").to_numpy()
            mine = ids % self.num_shards == self.shard
            index = DenseIndex.build(embeddings_of(table, manifest.contract.dim)[mine], ids[mine], manifest.contract, Settings().dense)
            index.place(self.use_gpu)
        self.index, self.index_dir = index, index_dir
        if os.environ.get("CODEINTEL_FAULT_FAISS_DIM"):  # fault injection for readiness tests
            self.index.manifest.vec_dim = int(os.environ["CODEINTEL_FAULT_FAISS_DIM"])

    def search(self, vector: np.ndarray, k: int, allowed: list[int] | None = None) -> list[tuple[int, float]]:
        selector = None if allowed is None else np.asarray(allowed, dtype=np.int64)
        return self.index.search(vector, k, allowed=selector)[0]

    def info(self) -> dict:
        m = self.index.manifest
        return {"shard": self.shard, "num_shards": self.num_shards, "dim": m.vec_dim, "vectors": self.index.ntotal,
                "index_type": m.index_type, "gpu": m.gpu, "gpu_reason": m.gpu_reason}

    def check_health(self) -> None:
        if self.index.ntotal < 0:
            raise RuntimeError("FAISS index lost")


@serve.deployment(name="LexicalRetriever", ray_actor_options={"num_cpus": 0.25})
class LexicalRetriever(_Reloadable):
    """BM25 over Lucene; one JVM per replica (started here, in the replica process)."""

    def __init__(self, index_dir: str) -> None:
        self.fail = bool(os.environ.get("CODEINTEL_FAULT_LEXICAL"))  # fault injection for readiness tests
        self.load(index_dir)

    def load(self, index_dir: str) -> None:
        paths, _ = _current(index_dir)
        index = LexicalIndex(paths.lexical)
        self.docs = index.count()
        previous = getattr(self, "index", None)
        self.index, self.engine, self.index_dir = index, LexicalEngine(index), index_dir
        if previous is not None:
            previous.close()

    def retrieve(self, query: PreparedQuery, k: int, allowed: frozenset[int] | None = None) -> RetrieverResult:
        if self.fail:
            raise RuntimeError("lexical retriever failing (fault injection)")
        return self.engine.retrieve(query, k, allowed)

    def info(self) -> dict:
        return {"docs": self.docs, "failing": self.fail}

    def check_health(self) -> None:
        self.index.search("health", 1)


@serve.deployment(name="Hydrator", ray_actor_options={"num_cpus": 0.25})
class Hydrator(_Reloadable):
    """DuckDB catalog: hydrate ids with the scope in SQL; also scope ids, path mentions, status."""

    def __init__(self, index_dir: str) -> None:
        self.load(index_dir)

    def load(self, index_dir: str) -> None:
        previous = getattr(self, "catalog", None)
        self.paths, self.manifest = _current(index_dir)
        self.catalog = Catalog(self.paths.catalog)
        if previous is not None:
            previous.close()
        self.parquet_dim = int(read_chunk_table(self.paths.chunks, columns=["embedding"]).schema.field("embedding").type.list_size)
        self.index_dir = index_dir

    def query_by_ids(self, ids: list[int], scope: Scope) -> list[ChunkRow]:
        return self.catalog.query_by_ids(ids, scope)

    def ids_in_scope(self, scope: Scope) -> list[int]:
        return self.catalog.ids_in_scope(scope)

    def ids_for_paths(self, paths: tuple[str, ...], limit: int) -> list[int]:
        return self.catalog.ids_for_paths(paths, limit)

    def info(self) -> dict:
        m = self.manifest
        return {
            "version": self.paths.name, "repo": m.repo.name, "commit": m.repo.commit, "root": m.repo.root,
            "files": m.files, "chunks": self.catalog.count(), "built_at": m.built_at, "parquet_dim": self.parquet_dim,
            "contract": {"model_id": m.contract.model_id, "dim": m.contract.dim, "dtype": m.contract.dtype,
                         "normalized": m.contract.normalized, "metric": m.contract.metric},
            "dense_type": m.dense_type, "lexical_docs": m.lexical_docs, "path": str(Path(self.paths.root)),
        }

    def check_health(self) -> None:
        self.catalog.count()


@serve.deployment(name="Reranker", ray_actor_options={"num_cpus": 0.25})
class RerankerDeployment:
    def __init__(self, engine: Reranker | None = None) -> None:
        self.engine = engine or create_reranker()
        self.engine.score("warm", ["up"])

    def score(self, query: str, passages: list[str]) -> list[float]:
        return [float(x) for x in self.engine.score(query, passages)]

    def info(self) -> dict:
        return {"model_id": self.engine.spec.model_id}

    def check_health(self) -> None:
        self.engine.score("health", ["check"])


@serve.deployment(name="ScopeStore", num_replicas=1, ray_actor_options={"num_cpus": 0.1})
class ScopeStore:
    """The one shared session-scope registry (exactly one replica by design)."""

    def __init__(self, backend: str = "memory", ttl_s: float = 3600.0, max_sessions: int = 10_000) -> None:
        self.registry = create_registry(backend, ttl_s, max_sessions)

    def get(self, session_id: str) -> Scope | None:
        return self.registry.get(session_id)

    def put(self, session_id: str, scope: Scope) -> Scope:
        return self.registry.put(session_id, scope)

    def delete(self, session_id: str) -> bool:
        return self.registry.delete(session_id)

    def info(self) -> dict:
        return {"sessions": len(self.registry), "hits": self.registry.hits, "misses": self.registry.misses}



@serve.deployment(name="Generator", ray_actor_options={"num_cpus": 0.25})
class Generator:
    """Streams answer events for a question and its passages.

    ``engine="llm"``: the bundled CPU model through llama.cpp; when it cannot load, the replica falls
    back to the extractive engine and says why (readiness reports degraded). ``"extractive"``: no model.
    """

    def __init__(self, engine: str = "extractive") -> None:
        self.fallback: str | None = None
        self.engine = ExtractiveEngine()
        if engine == "llm":
            try:
                llm = LlamaEngine()
                llm.count_tokens("warm up")  # assemble, tokenizer, weights: fail here, not mid-request
                self.engine = llm
            except (ModelUnavailableError, ImportError, OSError) as exc:
                self.fallback = f"LLM unavailable, answering extractively: {exc}"
        elif engine != "extractive":
            raise ValueError(f"unknown generator engine {engine!r}")

    def generate(self, question: str, passages: list[Passage]):
        """Yields AnswerEvents; the ingress reads them with ``handle.options(stream=True)``."""
        for delta in self.engine.generate(question, passages):
            yield AnswerEvent("token", {"text": delta})

    def info(self) -> dict:
        return {"model_id": self.engine.model_id, "fallback": self.fallback}

    def check_health(self) -> None:
        if isinstance(self.engine, ExtractiveEngine):
            list(self.engine.generate("health", [Passage(1, "x", 1, 1, "", "x")]))

