"""The graph's back-end deployments: each is a codeintel class with Serve's hooks, nothing more.

``check_health`` runs the class's real ``check`` (Serve restarts a replica that fails it),
``reconfigure`` takes ``user_config: {index_dir}`` from serve_config.yaml to swap indexes in place.
Engines and settings are injected by the graph builder; tests bind their own graph.
"""

from __future__ import annotations

import asyncio

import numpy as np
from ray import serve

from codeintel.answer.generation import GenerationService
from codeintel.config import Settings
from codeintel.embedding import Embedder, create_embedder
from codeintel.rerank import Reranker, create_reranker
from codeintel.service.backends import HydratorBackend, LexicalBackend, ShardBackend
from codeintel.service.reindex import ReindexJobs
from codeintel.service.scopes import create_registry
from codeintel.indexing.pipeline import Indexer
from codeintel.storage.scope import Scope

__all__ = ["EmbedderDeployment", "FaissShard", "LexicalRetriever", "Hydrator", "IndexWriter", "RerankerDeployment", "ScopeStore", "Generator"]


class _Swappable:
    """``user_config: {index_dir}`` points a running replica at another index."""

    pool: object

    def reconfigure(self, user_config: dict) -> None:
        if (user_config or {}).get("index_dir"):
            self.pool.switch(user_config["index_dir"])

    def check_health(self) -> None:
        self.check()

    def __del__(self) -> None:  # Serve calls this when the replica shuts down: give its leases back now
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()


# Back ends of one search: a request waits in the replica's own queue rather than in the caller's
# router, whose retries back off when a replica is full (max_ongoing_requests); per-call access logs
# are the ingress's to write, not theirs (on 2 cores both cost the search at concurrency 8:
# benchmarks/results/serve-2026-12-03-*.md).
_BACKEND = {"ray_actor_options": {"num_cpus": 0.25}, "max_ongoing_requests": 32, "logging_config": {"enable_access_log": False}}


@serve.deployment(name="Embedder", **_BACKEND)
class EmbedderDeployment:
    """Queries arriving together are embedded in one model call (``serve.batch``): under load, one
    forward pass of 8 short queries costs little more than one."""

    def __init__(self, settings: Settings = Settings(), engine: Embedder | None = None) -> None:
        self.engine = engine or create_embedder(settings.embedding, engine=settings.engines)
        self.engine.embed_queries(["warm up"])  # load the model before taking traffic

    async def embed_queries(self, queries: list[str]) -> np.ndarray:
        if len(queries) == 1:
            return (await self._embed_together(queries[0]))[None, :]
        return await asyncio.to_thread(self.engine.embed_queries, queries)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _embed_together(self, queries: list[str]) -> list[np.ndarray]:
        # off the replica's event loop (SERVE_ENV runs user code there): the next batch gathers meanwhile
        return list(await asyncio.to_thread(self.engine.embed_queries, queries))

    def info(self) -> dict:
        return {"dim": self.engine.contract.dim, "model_id": self.engine.contract.model_id}

    def check_health(self) -> None:
        if self.engine.embed_queries(["health"]).shape != (1, self.engine.contract.dim):
            raise RuntimeError("embedder returned a wrong shape")


@serve.deployment(name="FaissShard", **_BACKEND)
class FaissShard(_Swappable, ShardBackend):
    pass


@serve.deployment(name="LexicalRetriever", **_BACKEND)
class LexicalRetriever(_Swappable, LexicalBackend):
    pass


@serve.deployment(name="Hydrator", **_BACKEND)
class Hydrator(_Swappable, HydratorBackend):
    pass


@serve.deployment(name="IndexWriter", num_replicas=1, ray_actor_options={"num_cpus": 0.25})
class IndexWriter(ReindexJobs):
    def __init__(self, index_dir: str, settings: Settings = Settings()) -> None:
        super().__init__(index_dir, lambda: Indexer(settings), store=settings.store)

    def reconfigure(self, user_config: dict) -> None:
        self.index_dir = (user_config or {}).get("index_dir") or self.index_dir

    def check_health(self) -> None:
        self.check()


@serve.deployment(name="Reranker", **_BACKEND)
class RerankerDeployment:
    def __init__(self, settings: Settings = Settings(), engine: Reranker | None = None) -> None:
        self.engine = engine or create_reranker(engine=settings.engines)
        self.engine.score("warm", ["up"])

    def score(self, query: str, passages: list[str]) -> list[float]:
        return [float(x) for x in self.engine.score(query, passages)]

    def info(self) -> dict:
        return {"model_id": self.engine.spec.model_id}

    def check_health(self) -> None:
        self.engine.score("health", ["check"])


@serve.deployment(name="ScopeStore", num_replicas=1, ray_actor_options={"num_cpus": 0.1})
class ScopeStore:
    """The one shared session-scope registry (exactly one replica by design: it is the source of truth)."""

    def __init__(self, backend: str = "memory", settings: Settings = Settings()) -> None:
        self.registry = create_registry(backend, settings.service.scope_ttl_s, settings.service.max_sessions)

    def get(self, session_id: str) -> Scope | None:
        return self.registry.get(session_id)

    def put(self, session_id: str, scope: Scope) -> Scope:
        return self.registry.put(session_id, scope)

    def delete(self, session_id: str) -> bool:
        return self.registry.delete(session_id)

    def info(self) -> dict:
        return {"sessions": len(self.registry), "hits": self.registry.hits, "misses": self.registry.misses}

    def check_health(self) -> None:
        self.registry.check()


@serve.deployment(name="Generator", ray_actor_options={"num_cpus": 0.25})
class Generator(GenerationService):
    """Streams answer events; the ingress reads them with ``handle.options(stream=True)``, and
    Serve cancels the stream (stopping the engine) when the client goes away.

    ``engine="vllm"``: ``llm`` is the handle of the LLM deployment and ``model`` what it loaded."""

    async def __init__(self, engine: str = "extractive", llm=None, settings: Settings = Settings(),
                       model: str | None = None, fallback: str | None = None) -> None:
        factory = None
        if engine == "vllm":
            from codeintel.answer.vllm_engine import ServeChat, VLLMEngine

            factory = lambda: VLLMEngine(ServeChat(llm), settings.vllm, model, settings.answer)  # noqa: E731
        GenerationService.__init__(self, engine, factory, fallback, settings)
        await self.start()

    async def check_health(self) -> None:
        await self.check()
