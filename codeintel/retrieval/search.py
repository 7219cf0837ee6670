"""One search, written once: the CLI runs it in process, the Serve ingress over replicas.

The pipeline owns every rule of a search run: the session scope, the version pin (a reindex that
prunes the pinned version mid-request re-runs the search once on the new one), retriever timeouts
(a late or failing retriever is skipped and reported), one retry of a call whose replica died, the
rerank degradation (a late or failing reranker leaves the fused order) and the stage timings.
Where the indexes live is the :class:`SearchPorts`' business.
"""

from __future__ import annotations

import asyncio
import math
import time
from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Iterator, Protocol, Sequence, TypeVar

import numpy as np

from codeintel.config import SearchSettings
from codeintel.errors import ReplicaLostError, RetrieversUnavailableError, VersionGoneError
from codeintel.retrieval.plan import HINTS, SearchPlan, SearchRequest, SearchResult
from codeintel.retrieval.query import PreparedQuery
from codeintel.retrieval.retrievers import RetrieverResult, elapsed_ms, path_hits, ranked_hits
from codeintel.service.metrics import ServiceMetrics
from codeintel.storage.catalog import ChunkRow
from codeintel.storage.dense import merge_best
from codeintel.storage.scope import Scope

__all__ = ["SearchPorts", "SearchPipeline", "ask_idempotent"]

T = TypeVar("T")
Hits = list[tuple[int, float]]


class SearchPorts(Protocol):
    """What a search reads, wherever it lives. Every call is a read: asking twice is harmless.

    A call whose backend process died raises :class:`ReplicaLostError`; one pinned to a pruned
    version raises :class:`VersionGoneError`; any other exception fails that stage only.
    """

    shards: int  # dense shards, searched in parallel and merged

    async def pin(self) -> str:
        """The index version a request reads from start to end."""

    async def session_scope(self, session_id: str) -> Scope | None: ...

    async def scope_ids(self, scope: Scope, version: str) -> list[int]: ...

    async def embed(self, text: str) -> np.ndarray: ...

    async def dense(self, shard: int, vector: np.ndarray, k: int, allowed: list[int] | None, version: str) -> Hits: ...

    async def lexical(self, query: PreparedQuery, k: int, allowed: frozenset[int] | None, version: str) -> Hits: ...

    async def path_ids(self, paths: tuple[str, ...], limit: int, version: str) -> list[int]: ...

    async def symbol_ids(self, names: tuple[str, ...], version: str) -> list[int]: ...

    async def callee_ids(self, ids: list[int], limit: int, version: str) -> list[int]: ...

    async def hydrate(self, ids: list[int], scope: Scope, version: str) -> list[ChunkRow]: ...

    async def rerank(self, query: str, passages: list[str]) -> list[float]: ...


def _why_skipped(exc: BaseException, timeout: float) -> str:
    """A skipped retriever's reason, as results and metrics report it."""
    if isinstance(exc, asyncio.TimeoutError):
        return f"timeout: no answer within {timeout:g} s"
    return f"error: {type(exc).__name__}"


class _Stages:
    """Stage timings of one run, in the order they happened."""

    def __init__(self, first: str, ms: float) -> None:
        self.ms: dict[str, float] = {first: ms}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = elapsed_ms(t)


async def ask_idempotent(call: Callable[..., Awaitable[T]], *args: Any) -> T:
    """An idempotent call, asked once more when its replica died under it (Serve routes the second to a live one)."""
    try:
        return await call(*args)
    except ReplicaLostError:
        return await call(*args)


class SearchPipeline:
    def __init__(self, ports: SearchPorts, settings: SearchSettings = SearchSettings(), metrics: ServiceMetrics | None = None) -> None:
        self.ports, self.settings, self.metrics = ports, settings, metrics

    async def search(self, request: SearchRequest, budget_s: float | None = None) -> SearchResult:
        """One search, every call pinned to one index version; raises InputError on a bad request.

        ``budget_s`` (an answer's retrieval budget) caps the retriever and rerank timeouts, so an
        answer starts with what is ready when the budget ends."""
        session_ms = None
        if request.scope is None:
            t = time.perf_counter()
            scope = await self._session_scope(request.session_id) if request.session_id else None
            session_ms = elapsed_ms(t) if request.session_id else None
            request = SearchRequest(request.query, request.k, request.mode, scope or Scope(), request.session_id)
        plan = SearchPlan.create(request, self.settings)
        try:
            return await self._run(plan, await self.ports.pin(), budget_s, session_ms)
        except VersionGoneError:  # a reindex pruned the pinned version before a replica opened it
            if self.metrics:
                self.metrics.version_retries.inc()
            return await self._run(plan, await self.ports.pin(), budget_s, session_ms)

    async def _session_scope(self, session_id: str) -> Scope | None:
        scope = await ask_idempotent(self.ports.session_scope, session_id)
        if self.metrics:
            self.metrics.scope_lookups.labels("hit" if scope is not None else "miss").inc()
        return scope

    async def _run(self, plan: SearchPlan, version: str, budget_s: float | None, session_ms: float | None) -> SearchResult:
        started = time.monotonic()
        stages = _Stages("condense" if plan.prepared.condensed else "prepare", plan.prepare_ms)  # a long report was condensed
        if session_ms is not None:
            stages.ms["session"] = session_ms  # the read of the session's scope from the shared store
        allowed: list[int] | None = None
        if not plan.scope.empty:
            with stages.stage("scope"):
                allowed = await ask_idempotent(self.ports.scope_ids, plan.scope, version)
        results, skipped = await self._retrieve(plan, allowed, version, min(self.settings.retriever_timeout_s, budget_s or math.inf))
        if plan.uses_graph and self.settings.expand_from > 0:
            expansion = await self._expand(plan, results, allowed, version, min(self.settings.retriever_timeout_s, budget_s or math.inf))
            if isinstance(expansion, str):
                skipped["graph"] = expansion
            else:
                results.append(expansion)
        for result in results:
            stages.ms.update(result.ms)
        with stages.stage("fuse"):
            scores = plan.fuse(results)
        with stages.stage("hydrate"):
            rows, scores = plan.select(await ask_idempotent(self.ports.hydrate, list(scores), plan.scope, version), scores)
        if plan.reranks and rows:
            timeout = self.settings.rerank_timeout_s
            if budget_s is not None:
                timeout = max(0.05, min(timeout, budget_s - (time.monotonic() - started)))
            with stages.stage("rerank"):
                try:
                    logits = await asyncio.wait_for(ask_idempotent(self.ports.rerank, plan.prepared.text, plan.rerank_inputs(rows)), timeout)
                    rows, scores = plan.apply_rerank(rows, scores, logits)
                except asyncio.TimeoutError:
                    skipped["rerank"] = f"timeout: no answer within {timeout:.2g} s"
                except Exception as exc:  # a failing reranker degrades the result, it does not fail it
                    skipped["rerank"] = f"error: {type(exc).__name__}"
        result = plan.result(rows, scores, results, skipped, stages.ms, version)
        if self.metrics:
            self.metrics.observe_search(result.timings_ms, result.retrievers, result.skipped_retrievers)
        return result

    async def _retrieve(self, plan: SearchPlan, allowed: list[int] | None, version: str, timeout: float) -> tuple[list[RetrieverResult], dict[str, str]]:
        """Every first-stage retriever of the plan at once; the ones that fail or run late are skipped."""
        allowed_set = None if allowed is None else frozenset(allowed)
        calls = {
            "dense": lambda: self._dense(plan, allowed, version),
            "bm25": lambda: self._lexical(plan, allowed_set, version),
            "path": lambda: self._path(plan, allowed_set, version),
            "symbol": lambda: self._symbol(plan, allowed_set, version),
        }
        names = list(plan.retrievers)
        outcomes = await asyncio.gather(*(asyncio.wait_for(calls[name](), timeout) for name in names), return_exceptions=True)
        results: list[RetrieverResult] = []
        skipped: dict[str, str] = {}
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, VersionGoneError):
                raise outcome
            if isinstance(outcome, BaseException):
                skipped[name] = _why_skipped(outcome, timeout)
            else:
                results.append(outcome)
        if all(r.name in HINTS for r in results):  # file and name mentions alone are a hint, not a ranking
            raise RetrieversUnavailableError("every retriever failed: " + "; ".join(f"{k} {v}" for k, v in skipped.items()))
        return results, skipped

    async def _expand(self, plan: SearchPlan, results: list[RetrieverResult], allowed: list[int] | None, version: str,
                      timeout: float) -> RetrieverResult | str:
        """What the fused top hits call, as one more hint (or why there is none): an answer to "how
        does X work" often lives in the helper X calls, which shares none of the question's words."""
        t = time.perf_counter()
        seeds = [i for i, _ in list(plan.fuse(results).items())[: self.settings.expand_from]]
        try:
            ids = await asyncio.wait_for(ask_idempotent(self.ports.callee_ids, seeds, self.settings.expand_hits, version), timeout)
        except VersionGoneError:
            raise
        except Exception as exc:  # the graph is a hint: without it the search goes on
            return _why_skipped(exc, timeout)
        hits = ranked_hits(ids, None if allowed is None else frozenset(allowed))
        return RetrieverResult("graph", hits, {"graph": elapsed_ms(t)})

    async def _dense(self, plan: SearchPlan, allowed: list[int] | None, version: str) -> RetrieverResult:
        t = time.perf_counter()
        vector = await ask_idempotent(self.ports.embed, plan.prepared.text)
        embed_ms = elapsed_ms(t)
        t = time.perf_counter()
        hits: Hits = []
        if allowed is None or allowed:
            parts: Sequence[Hits] = await asyncio.gather(
                *(ask_idempotent(self.ports.dense, shard, vector, plan.fetch, allowed, version) for shard in range(self.ports.shards))
            )
            hits = merge_best(parts, plan.fetch)
        return RetrieverResult("dense", hits, {"embed": embed_ms, "dense": elapsed_ms(t)})

    async def _lexical(self, plan: SearchPlan, allowed: frozenset[int] | None, version: str) -> RetrieverResult:
        t = time.perf_counter()
        hits = await ask_idempotent(self.ports.lexical, plan.prepared, plan.fetch, allowed, version)
        return RetrieverResult("bm25", hits, {"bm25": elapsed_ms(t)})

    async def _path(self, plan: SearchPlan, allowed: frozenset[int] | None, version: str) -> RetrieverResult:
        t = time.perf_counter()
        hits: Hits = []
        if plan.prepared.paths:
            ids = await ask_idempotent(self.ports.path_ids, plan.prepared.paths, self.settings.path_fetch, version)
            hits = path_hits(ids, allowed, self.settings.path_hits)
        return RetrieverResult("path", hits, {"path": elapsed_ms(t)})

    async def _symbol(self, plan: SearchPlan, allowed: frozenset[int] | None, version: str) -> RetrieverResult:
        t = time.perf_counter()
        hits: Hits = []
        if plan.prepared.symbols:
            ids = await ask_idempotent(self.ports.symbol_ids, plan.prepared.symbols, version)
            hits = ranked_hits(ids, allowed, self.settings.symbol_hits)
        return RetrieverResult("symbol", hits, {"symbol": elapsed_ms(t)})
