"""The FastAPI ingress (no `from __future__ import annotations`: FastAPI must see real types): validates, fans out to the back-end deployments in one step, fuses, answers.

All ranking logic is codeintel's SearchPlan; this module only moves data between replicas, applies
timeouts (a retriever that times out or fails is reported, not fatal) and speaks HTTP.
"""


import asyncio
import json
import math
import time
from typing import Any, Literal

import msgspec
from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError

from codeintel.answer.extractive import Passage
from codeintel.answer.orchestrator import AnswerOrchestrator, AnswerRequest
from codeintel.answer.traces import TraceWriter
from codeintel.errors import CodeIntelError, InputError, VersionGoneError
from codeintel.retrieval.plan import MAX_K, MAX_QUERY_CHARS, MODES, SearchPlan, SearchRequest, SearchResult
from codeintel.retrieval.retrievers import RetrieverResult, elapsed_ms, path_hits
from codeintel.service.metrics import ServiceMetrics
from codeintel.service.problems import Problem, install_problem_handlers
from codeintel.service.scopes import ScopeCache
from codeintel.storage.dense import merge_best
from codeintel.storage.layout import IndexLayout
from codeintel.storage.scope import Scope
from codeintel.storage.source import MAX_LINES

__all__ = ["Ingress", "IngressConfig", "api"]


class IngressConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    index_dir: str | None = None  # requests pin the version its CURRENT names; None: replicas read CURRENT themselves
    traces_dir: str | None = None  # AnswerTrace Parquet dataset; None: no traces
    retriever_timeout_s: float = 5.0
    rerank_timeout_s: float = 15.0
    rerank_depth: int = 30
    rerank_weight: float = 0.5
    expect_gpu: bool = False


class ScopeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include: list[str] = Field(default_factory=list, max_length=64)
    exclude: list[str] = Field(default_factory=list, max_length=64)
    languages: list[str] = Field(default_factory=list, max_length=64)

    def to_scope(self) -> Scope:
        return Scope(include=tuple(self.include), exclude=tuple(self.exclude), languages=tuple(self.languages))


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(default=10, ge=1, le=MAX_K)
    mode: Literal["dense", "bm25", "hybrid", "hybrid+rerank"] = "hybrid+rerank"
    scope: ScopeBody | None = None


class AnswerBody(SearchBody):
    k: int = Field(default=8, ge=1, le=50)
    retrieval_budget_s: float = Field(default=20.0, gt=0, le=120)
    generation_budget_s: float = Field(default=120.0, gt=0, le=600)


class ReindexBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(default=None, max_length=4096, description="the indexed repository or a folder inside it; default: the repository")
    rebuild: bool = Field(default=False, description="ignore the previous version and build from scratch (recovers a damaged index)")


class ChunksBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str = Field(min_length=1, max_length=4096)
    start_line: int | None = Field(default=None, ge=1, le=2**31 - 1)
    end_line: int | None = Field(default=None, ge=1, le=2**31 - 1)


class FileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str = Field(min_length=1, max_length=4096)
    start_line: int = Field(default=1, ge=1, le=2**31 - 1)
    end_line: int | None = Field(default=None, ge=1, le=2**31 - 1)


MAX_FILE_CHUNKS = 200  # chunks one /v1/chunks answer holds at most


api = FastAPI(
    title="codeintel",
    version="0.1.0",
    description="Hybrid code search (FAISS + Lucene BM25, RRF, cross-encoder rerank) with cited answers.",
)
install_problem_handlers(api)



async def _call(response, timeout: float):
    """Await a Serve DeploymentResponse with a timeout, cancelling it when time runs out."""
    try:
        return await asyncio.wait_for(_await(response), timeout)
    except asyncio.TimeoutError:
        response.cancel()
        raise


async def _await(response):
    return await response


async def _replica(response):
    """Await a replica call; a codeintel error raised there surfaces as itself (a problem), not as a RayTaskError."""
    try:
        return await response
    except Exception as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, CodeIntelError):
            raise cause from None
        raise


async def _ask(method, *args):
    """Call an idempotent replica method; when the replica died under the call, ask once more (Serve
    routes it to a live replica)."""
    try:
        return await _replica(method.remote(*args))
    except (RayActorError, ActorUnavailableError):
        return await _replica(method.remote(*args))


def _headline(message: str | None) -> str:
    """The last line of a Serve status message that is not a stack frame (Python or Java)."""
    lines = [line for line in (message or "").splitlines() if line.strip() and not line.startswith((" ", "\t"))]
    return lines[-1][:200] if lines else "no detail"


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Ingress:
    def __init__(self, embedder, shards: list, lexical, hydrator, reranker, scopes, generator, config: IngressConfig | dict | None = None, writer=None) -> None:
        self.embedder, self.shards, self.lexical, self.writer = embedder, list(shards), lexical, writer
        self.hydrator, self.reranker, self.scopes, self.generator = hydrator, reranker, scopes, generator
        if isinstance(config, dict):
            config = msgspec.convert(config, IngressConfig)
        self.config = config or IngressConfig()
        self.metrics = ServiceMetrics(ray_mirror=True)
        self.scope_cache = ScopeCache(ttl_s=1.0)
        self._index_info: tuple[float, dict] | None = None
        self.traces = TraceWriter(self.config.traces_dir) if self.config.traces_dir else None

    def reconfigure(self, user_config: dict) -> None:
        """``user_config: {index_dir}`` (serve_config.yaml) moves request pinning along with the replicas' index swap."""
        index_dir = (user_config or {}).get("index_dir")
        if index_dir:
            self.config = msgspec.structs.replace(self.config, index_dir=index_dir)

    def __del__(self) -> None:  # Serve calls this when the replica shuts down: flush queued traces
        traces = getattr(self, "traces", None)
        if traces is not None:
            traces.close()

    # -- plumbing ---------------------------------------------------------------------------
    async def _session_scope(self, session_id: str | None) -> Scope | None:
        if not session_id:
            return None
        cached, scope = self.scope_cache.get(session_id)
        if not cached:
            scope = await self.scopes.get.remote(session_id)
            self.scope_cache.put(session_id, scope)
            self.metrics.scope_lookups.labels("hit" if scope is not None else "miss").inc()
        return scope

    async def _info(self) -> dict:
        """The hydrator's index info, cached for a few seconds: one hop less per search."""
        now = time.monotonic()
        if self._index_info is None or self._index_info[0] < now:
            self._index_info = (now + 5.0, await self.hydrator.info.remote())
        return self._index_info[1]

    def _pin(self) -> str | None:
        """The index version a request reads from start to end (None: each replica's CURRENT)."""
        return IndexLayout(self.config.index_dir).current_name() if self.config.index_dir else None

    async def _dense(self, plan: SearchPlan, allowed: list[int] | None, version: str | None) -> RetrieverResult:
        t = time.perf_counter()
        vector = await _ask(self.embedder.embed_queries, [plan.prepared.text])
        embed_ms = elapsed_ms(t)
        t = time.perf_counter()
        parts = await asyncio.gather(*(_ask(s.search, vector, plan.fetch, allowed, version) for s in self.shards))
        hits = merge_best(parts, plan.fetch)
        return RetrieverResult("dense", hits, {"embed": embed_ms, "dense": elapsed_ms(t)})

    async def _path(self, plan: SearchPlan, allowed: list[int] | None, version: str | None) -> RetrieverResult:
        t = time.perf_counter()
        ids = await _ask(self.hydrator.ids_for_paths, plan.prepared.paths, 80, version) if plan.prepared.paths else []
        hits = path_hits(ids, None if allowed is None else set(allowed), 20)
        return RetrieverResult("path", hits, {"path": elapsed_ms(t)})

    async def search_request(self, request: SearchRequest, budget_s: float | None = None) -> SearchResult:
        """One search, every call pinned to one index version. When a reindex pruned that version
        before a replica opened it, the search runs once more on the new CURRENT: a swap never fails
        a query and never mixes two versions in one answer.

        ``budget_s`` (an answer's retrieval budget) caps the retriever and rerank timeouts, so the
        answer starts with what is ready when the budget ends: late retrievers are skipped, a late
        rerank leaves the fused order."""
        try:
            return await self._search(request, self._pin(), budget_s)
        except VersionGoneError:
            self.metrics.version_retries.inc()
            return await self._search(request, self._pin(), budget_s)

    async def _search(self, request: SearchRequest, version: str | None, budget_s: float | None = None) -> SearchResult:
        started = time.monotonic()
        retriever_timeout = min(self.config.retriever_timeout_s, budget_s or math.inf)
        plan = SearchPlan(request, rerank_depth=self.config.rerank_depth, rerank_weight=self.config.rerank_weight)
        allowed = None
        if not plan.scope.empty:
            t = time.perf_counter()
            allowed = await _ask(self.hydrator.ids_in_scope, plan.scope, version)
            plan.timings["scope"] = elapsed_ms(t)
        calls: dict[str, Any] = {}
        for name in plan.retrievers:
            if name == "dense":
                calls[name] = self._dense(plan, allowed, version)
            elif name == "bm25":
                calls[name] = _ask(self.lexical.retrieve, plan.prepared, plan.fetch, None if allowed is None else frozenset(allowed), version)
            else:
                calls[name] = self._path(plan, allowed, version)
        outcomes = await asyncio.gather(
            *(asyncio.wait_for(c, retriever_timeout) for c in calls.values()), return_exceptions=True
        )
        results: list[RetrieverResult] = []
        skipped: dict[str, str] = {}
        for name, outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, VersionGoneError):  # _ask surfaces it as itself
                raise outcome
            if isinstance(outcome, asyncio.TimeoutError):
                skipped[name] = f"timeout: no answer within {retriever_timeout:g} s"
            elif isinstance(outcome, BaseException):
                skipped[name] = f"error: {type(outcome).__name__}"
            else:
                results.append(outcome)
        if not results:
            raise Problem(503, "Retrievers unavailable", "every retriever failed: " + "; ".join(f"{k} {v}" for k, v in skipped.items()))
        ids = plan.fuse(results, skipped)
        t = time.perf_counter()
        rows = plan.select(await _ask(self.hydrator.query_by_ids, ids, plan.scope, version))
        plan.timings["hydrate"] = elapsed_ms(t)
        if plan.reranks and rows:
            t = time.perf_counter()
            rerank_timeout = self.config.rerank_timeout_s
            if budget_s is not None:
                rerank_timeout = max(0.05, min(rerank_timeout, budget_s - (time.monotonic() - started)))
            try:
                logits = await asyncio.wait_for(_ask(self.reranker.score, plan.prepared.text, plan.rerank_inputs(rows)), rerank_timeout)
                rows = plan.apply_rerank(rows, logits)
            except asyncio.TimeoutError:
                plan.skipped["rerank"] = f"timeout: no answer within {rerank_timeout:.2g} s"
            except Exception as exc:  # a failing reranker degrades the answer, it does not fail it
                plan.skipped["rerank"] = f"error: {type(exc).__name__}"
            plan.timings["rerank"] = elapsed_ms(t)
        result = plan.result(rows, version or (await self._info())["version"])
        self.metrics.observe_search(result.timings_ms, result.retrievers, result.skipped_retrievers)
        return result

    def _request(self, body: SearchBody, scope: Scope | None) -> SearchRequest:
        scope = body.scope.to_scope() if body.scope is not None else (scope or Scope())
        try:
            return SearchRequest(query=body.query, k=body.k, mode=body.mode, scope=scope).validate()
        except InputError as exc:
            raise Problem(400, "Bad request", str(exc)) from None

    # -- routes -----------------------------------------------------------------------------
    @api.post("/v1/search")
    async def search(self, body: SearchBody, x_session_id: str | None = Header(default=None, max_length=128)) -> Response:
        start = time.perf_counter()
        status = 200
        try:
            result = await self.search_request(self._request(body, await self._session_scope(x_session_id)))
            return Response(msgspec.json.encode(result), media_type="application/json")
        except Problem as exc:
            status = exc.status
            raise
        except Exception:
            status = 500
            raise
        finally:
            self.metrics.request("search", status, time.perf_counter() - start)

    async def _generate(self, question: str, passages: list[Passage]):
        """The usage dict, then text deltas, from the Generator deployment's stream; closing it cancels generation upstream."""
        stream = self.generator.options(stream=True).generate.remote(question, passages)
        try:
            async for event in stream:
                yield event.data["text"] if event.kind == "token" else event.data
        finally:
            stream.cancel()

    @api.post("/v1/answer")
    async def answer(self, body: AnswerBody, request: Request, x_session_id: str | None = Header(default=None, max_length=128)) -> StreamingResponse:
        """Server-sent events: hit*, then token* with citation as each [n] first appears, then done (or error)."""
        answer_request = AnswerRequest(
            search=self._request(body, await self._session_scope(x_session_id)),
            session_id=x_session_id,
            retrieval_budget_s=body.retrieval_budget_s,
            generation_budget_s=body.generation_budget_s,
        )
        model_id = (await self.generator.info.remote())["model_id"]
        orchestrator = AnswerOrchestrator(self.search_request, self._generate, model_id, self.traces)
        self.metrics.request("answer", 200)

        async def events():
            stream = orchestrator.stream(answer_request)
            try:
                async for event, data in stream:
                    if await request.is_disconnected():
                        break  # closing the stream below cancels generation upstream
                    yield _sse(event, data)
            finally:
                await stream.aclose()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @api.put("/v1/scope")
    async def put_scope(self, body: ScopeBody, x_session_id: str = Header(max_length=128)) -> JSONResponse:
        try:
            scope = await self.scopes.put.remote(x_session_id, body.to_scope())
        except Exception as exc:
            cause = getattr(exc, "cause", None) or exc
            raise Problem(400, "Bad scope", str(cause).splitlines()[-1]) from None
        self.scope_cache.drop(x_session_id)
        return JSONResponse({"session_id": x_session_id, "scope": msgspec.to_builtins(scope)})

    @api.get("/v1/scope")
    async def get_scope(self, x_session_id: str = Header(max_length=128)) -> JSONResponse:
        scope = await self.scopes.get.remote(x_session_id)
        if scope is None:
            raise Problem(404, "Unknown session", f"no scope is set for session {x_session_id!r} (or it expired)")
        return JSONResponse({"session_id": x_session_id, "scope": msgspec.to_builtins(scope)})

    @api.delete("/v1/scope", status_code=204)
    async def delete_scope(self, x_session_id: str = Header(max_length=128)) -> Response:
        if not await self.scopes.delete.remote(x_session_id):
            raise Problem(404, "Unknown session", f"no scope is set for session {x_session_id!r}")
        self.scope_cache.drop(x_session_id)
        return Response(status_code=204)

    @api.post("/v1/chunks")
    async def file_chunks(self, body: ChunksBody) -> Response:
        """The indexed chunks of one file overlapping a line range; 404 when the uri is not an indexed file."""
        rows, truncated = await _ask(self.hydrator.file_chunks, body.uri, body.start_line, body.end_line, MAX_FILE_CHUNKS)
        chunks = [{"id": r.id, "uri": r.uri, "start_line": r.start_line, "end_line": r.end_line, "symbol": r.symbol, "lang": r.lang, "text": r.text} for r in rows]
        return JSONResponse({"uri": rows[0].uri if rows else body.uri, "chunks": chunks, "truncated": truncated})

    @api.post("/v1/file")
    async def file_lines(self, body: FileBody) -> Response:
        """Lines of a live indexed file (at most MAX_LINES); 404 when not indexed, 400 when it resolves outside the repo."""
        lines = await _ask(self.hydrator.file_lines, body.uri, body.start_line, body.end_line, MAX_LINES)
        return Response(msgspec.json.encode(lines), media_type="application/json")

    @api.post("/v1/reindex", status_code=202)
    async def reindex(self, body: ReindexBody | None = None) -> JSONResponse:
        """Start an incremental reindex of the served repository (one at a time: 409 while one runs).

        Poll the job at the Location; queries keep running and switch to the new version when it is published."""
        if self.writer is None:
            raise Problem(501, "Reindex unavailable", "this app was deployed without an IndexWriter")
        body = body or ReindexBody()
        job = await _replica(self.writer.start.remote(body.path, body.rebuild))
        return JSONResponse(job, status_code=202, headers={"Location": f"/v1/reindex/{job['job_id']}"})

    @api.get("/v1/reindex/{job_id}")
    async def reindex_job(self, job_id: str) -> JSONResponse:
        """A reindex job: state running|done|failed, stage and progress, the summary once done."""
        job = None if self.writer is None else await _ask(self.writer.job, job_id)
        if job is None:
            raise Problem(404, "Unknown job", f"no reindex job {job_id!r} (the newest ones are kept)")
        return JSONResponse(job)

    @api.get("/v1/status")
    async def status(self) -> JSONResponse:
        info = await self.hydrator.info.remote()
        shards = await asyncio.gather(*(s.info.remote() for s in self.shards))
        built = info["built_at"]
        return JSONResponse({"index": info, "shards": shards, "freshness": {"built_at": built, "commit": info["commit"]}})

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        report = await self.readiness()
        return JSONResponse(report, status_code=503 if report["mode"] == "down" else 200)

    async def readiness(self) -> dict:
        async def probe(name: str, response) -> tuple[str, dict]:
            try:
                return name, {"ok": True, **(await _call(response, 5.0))}
            except Exception as exc:
                return name, {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}

        probes = [probe("embedder", self.embedder.info.remote()), probe("hydrator", self.hydrator.info.remote()),
                  probe("lexical", self.lexical.info.remote()), probe("reranker", self.reranker.info.remote()),
                  probe("scope_store", self.scopes.info.remote()), probe("generator", self.generator.info.remote())]
        probes += [probe(f"faiss_shard_{i}", s.info.remote()) for i, s in enumerate(self.shards)]
        checks = dict(await asyncio.gather(*probes))
        down: list[str] = []
        degraded: list[str] = []
        if not checks["hydrator"]["ok"]:
            down.append("index unreadable")
        shard_checks = [v for k, v in checks.items() if k.startswith("faiss_shard_")]
        if not all(c["ok"] for c in shard_checks):
            down.append("a FAISS shard is unavailable")
        if not checks["embedder"]["ok"]:
            down.append("embedder unavailable")
        if checks["embedder"]["ok"] and checks["hydrator"]["ok"]:
            dims = {"embedder": checks["embedder"]["dim"], "parquet": checks["hydrator"]["parquet_dim"]}
            dims |= {f"faiss_shard_{i}": c["dim"] for i, c in enumerate(shard_checks) if c["ok"]}
            checks["dimensions"] = {"ok": len(set(dims.values())) == 1, **dims}
            if not checks["dimensions"]["ok"]:
                down.append(f"dimension mismatch {dims}")
        if not checks["lexical"]["ok"] or checks["lexical"].get("failing"):
            degraded.append("lexical retriever down")
        if not checks["reranker"]["ok"]:
            degraded.append("reranker down")
        if not checks["generator"]["ok"]:
            degraded.append("generator down")
        elif checks["generator"].get("fallback"):
            degraded.append(checks["generator"]["fallback"])
        if self.config.expect_gpu:
            cpu = [k for k, v in checks.items() if k.startswith("faiss_shard_") and v.get("ok") and not v.get("gpu")]
            if cpu:
                degraded.append(f"{', '.join(cpu)} on CPU instead of GPU")
        degraded += await self._serve_health()
        gpu = sum(1 for c in shard_checks if c.get("gpu"))
        self.metrics.faiss_gpu.set(gpu)
        self.metrics.faiss_shards.set(len(shard_checks))
        mode = "down" if down else "degraded" if degraded else "ready"
        return {"mode": mode, "reasons": down + degraded, "checks": checks}

    async def _serve_health(self) -> list[str]:
        """Deployments Serve itself reports unhealthy: a replica that cannot start (say, its index
        files are damaged) is invisible to a probe that another, healthy replica answers."""
        try:
            app = serve.get_replica_context().app_name
            status = await asyncio.wait_for(asyncio.to_thread(serve.status), 5.0)
            deployments = status.applications[app].deployments
        except Exception:  # outside a Serve replica (unit tests) or the controller is busy: no opinion
            return []
        return [f"{name} {d.status.value.lower()}: {_headline(d.message)}"
                for name, d in sorted(deployments.items()) if d.status.value in ("UNHEALTHY", "DEPLOY_FAILED")]

    @api.get("/metrics")
    async def metrics(self) -> PlainTextResponse:
        return PlainTextResponse(generate_latest(self.metrics.registry).decode(), media_type="text/plain; version=0.0.4")


assert set(MODES) == {"dense", "bm25", "hybrid", "hybrid+rerank"}  # keep SearchBody.mode in step
