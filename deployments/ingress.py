"""The FastAPI ingress (no `from __future__ import annotations`: FastAPI must see real types).

It speaks HTTP and Ray and nothing else: the search is codeintel's SearchPipeline, the answer its
AnswerOrchestrator, readiness its policy; this module supplies their ports from deployment handles
and turns results into responses.
"""


import asyncio
import json
import logging
import os
import time
from typing import AsyncIterator

import msgspec
import numpy as np
from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError

from codeintel.answer.extractive import Passage
from codeintel.answer.orchestrator import AnswerOrchestrator, AnswerRequest
from codeintel.answer.traces import TraceWriter
from codeintel.config import DEFAULT_MODE, Settings
from codeintel.errors import CodeIntelError, Problem, ReplicaLostError
from codeintel.retrieval.plan import MAX_K, MAX_QUERY_CHARS, Mode, SearchRequest
from codeintel.retrieval.query import PreparedQuery
from codeintel.retrieval.search import SearchPipeline, ask_idempotent
from codeintel.service.coalesce import Call, Coalescer
from codeintel.service.metrics import ServiceMetrics
from codeintel.service.problems import install_problem_handlers
from codeintel.service.readiness import PROBES, probe_error, readiness, status_headline
from codeintel.storage.catalog import ChunkRow
from codeintel.service.versions import version_source
from codeintel.storage.scope import Scope
from codeintel.storage.source import MAX_LINES
from deployments import SERVE_ENV

__all__ = ["Ingress", "IngressConfig", "api"]


class IngressConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    index_dir: str  # requests pin the version its CURRENT names (the store's, where settings.store has one)
    traces_dir: str | None = None  # AnswerTrace Parquet dataset; None: no traces
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
    mode: Mode = DEFAULT_MODE
    scope: ScopeBody | None = Field(default=None, description="overrides the session's stored scope (X-Session-ID) for this request")

    def request(self, session_id: str | None) -> SearchRequest:
        scope = None if self.scope is None else self.scope.to_scope()
        return SearchRequest(query=self.query, k=self.k, mode=self.mode, scope=scope, session_id=session_id).validate()


class AnswerBody(SearchBody):
    k: int = Field(default=8, ge=1, le=50)
    retrieval_budget_s: float = Field(default=20.0, gt=0, le=120)
    generation_budget_s: float = Field(default=120.0, gt=0, le=600)


class ReindexBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
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


class SymbolBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    symbol: str = Field(min_length=1, max_length=512, description="a name (`publish`), or qualified (`IndexLayout.publish`, `pkg.mod.Class`)")
    limit: int = Field(default=20, ge=1, le=200)
    scope: ScopeBody | None = Field(default=None, description="overrides the session's stored scope (X-Session-ID) for this request")


class OutlineBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str = Field(min_length=1, max_length=4096)


MAX_FILE_CHUNKS = 200  # chunks one /v1/chunks answer holds at most
SessionHeader = Header(default=None, max_length=128)


api = FastAPI(
    title="codeintel",
    version="0.1.0",
    description="Hybrid code search (FAISS + Lucene BM25, RRF, cross-encoder rerank) with cited answers.",
)
install_problem_handlers(api)


@api.middleware("http")
async def _count_requests(request: Request, call_next):
    """Every request's real status in the metrics, 4xx included; a streamed answer counts when it ends."""
    start, status = time.perf_counter(), 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        endpoint = getattr(request.scope.get("route"), "path", "unmatched")
        if not (endpoint == "/v1/answer" and status == 200):
            request.app.state.metrics.request(endpoint, status, time.perf_counter() - start)


async def _remote(method, *args):
    """A replica call; a codeintel error raised there surfaces as itself, a dead replica as ReplicaLostError."""
    try:
        return await method.remote(*args)
    except (RayActorError, ActorUnavailableError) as exc:
        raise ReplicaLostError(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, CodeIntelError):
            raise cause from None
        raise


class _ServePorts:
    """The search pipeline's ports over deployment handles (codeintel.retrieval.search.SearchPorts).

    The calls of the searches running in this replica travel to each back end together
    (codeintel.service.coalesce): on 2 cores the fixed cost of a hop, not the work, is most of what
    the graph adds to a search (benchmarks/results/serve-*.md)."""

    def __init__(self, ingress: "Ingress") -> None:
        self.ingress = ingress
        self.shards = len(ingress.shards)
        batch = ingress.metrics.backend_batch
        self._embedder = Coalescer(self._embed_many, observe=batch.labels("embedder").observe)
        self._shards = [_coalesced(s, batch.labels(f"faiss_shard_{i}").observe) for i, s in enumerate(ingress.shards)]
        self._lexical = _coalesced(ingress.lexical, batch.labels("lexical").observe)
        self._hydrator = _coalesced(ingress.hydrator, batch.labels("hydrator").observe)

    async def _embed_many(self, calls: list[Call]) -> list[np.ndarray]:
        vectors = await _remote(self.ingress.embedder.embed_queries, [args[0] for _, args in calls])
        return [vectors[i : i + 1] for i in range(len(calls))]

    async def pin(self) -> str:
        return self.ingress.versions.current()

    async def session_scope(self, session_id: str) -> Scope | None:
        return await _remote(self.ingress.scopes.get, session_id)

    async def scope_ids(self, scope: Scope, version: str) -> list[int]:
        return await self._hydrator.call("ids_in_scope", scope, version)

    async def embed(self, text: str) -> np.ndarray:
        return await self._embedder.call("embed_queries", text)

    async def dense(self, shard: int, vector: np.ndarray, k: int, allowed: list[int] | None, version: str) -> list[tuple[int, float]]:
        return await self._shards[shard].call("search", vector, k, allowed, version)

    async def lexical(self, query: PreparedQuery, k: int, allowed: frozenset[int] | None, version: str) -> list[tuple[int, float]]:
        return await self._lexical.call("retrieve", query, k, allowed, version)

    async def path_ids(self, paths: tuple[str, ...], limit: int, version: str) -> list[int]:
        return await self._hydrator.call("ids_for_paths", paths, limit, version)

    async def symbol_ids(self, names: tuple[str, ...], version: str) -> list[int]:
        return await self._hydrator.call("symbol_ids", names, version)

    async def callee_ids(self, ids: list[int], limit: int, version: str) -> list[int]:
        return await self._hydrator.call("callee_ids", ids, limit, version)

    async def hydrate(self, ids: list[int], scope: Scope, version: str) -> list[ChunkRow]:
        return await self._hydrator.call("query_by_ids", ids, scope, version)

    async def rerank(self, query: str, passages: list[str]) -> list[float]:
        return await _remote(self.ingress.reranker.score, query, passages)


def _coalesced(handle, observe) -> Coalescer:
    return Coalescer(lambda calls: _remote(handle.call_many, calls), observe=observe)


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


# The ingress only awaits its back ends: it holds many requests at once (Serve's default of 5 made
# the proxy hold back the sixth), and the more it holds, the more of their calls travel together.
@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
@serve.ingress(api)
class Ingress:
    def __init__(self, embedder, shards: list, lexical, hydrator, reranker, scopes, generator, writer,
                 config: IngressConfig, settings: Settings = Settings()) -> None:
        self.embedder, self.shards, self.lexical, self.hydrator = embedder, list(shards), lexical, hydrator
        self.reranker, self.scopes, self.generator, self.writer = reranker, scopes, generator, writer
        self.config, self.settings = config, settings
        self.versions = version_source(config.index_dir, settings.store)  # what a request pins: CURRENT
        self.metrics = ServiceMetrics(ray_mirror=True)
        api.state.metrics = self.metrics  # one ingress per replica process: the middleware counts into it
        self.pipeline = SearchPipeline(_ServePorts(self), settings.search, self.metrics)
        self.traces = TraceWriter(config.traces_dir) if config.traces_dir else None
        if any(os.environ.get(name) != value for name, value in SERVE_ENV.items()):  # what this replica's Ray started with
            logging.getLogger("ray.serve").warning("Ray runs without deployments.SERVE_ENV: each search pays the Python proxy's hop "
                                                   "(start Ray as serve_config.yaml says)")

    def reconfigure(self, user_config: dict) -> None:
        """``user_config: {index_dir}`` (serve_config.yaml) moves request pinning along with the replicas' index swap."""
        if (user_config or {}).get("index_dir"):
            self.config = msgspec.structs.replace(self.config, index_dir=user_config["index_dir"])
            self.versions = version_source(self.config.index_dir, self.settings.store)

    def check_health(self) -> None:
        if self.traces is not None:
            self.traces.check()

    def __del__(self) -> None:  # Serve calls this when the replica shuts down: flush queued traces
        traces = getattr(self, "traces", None)
        if traces is not None:
            traces.close()

    # -- search and answer ------------------------------------------------------------------
    @api.post("/v1/search")
    async def search(self, body: SearchBody, x_session_id: str | None = SessionHeader) -> Response:
        result = await self.pipeline.search(body.request(x_session_id))
        return Response(msgspec.json.encode(result), media_type="application/json")

    async def _generate(self, question: str, passages: list[Passage]) -> AsyncIterator[str | dict]:
        """The usage dict, then text deltas, from the Generator's stream; closing it cancels generation upstream."""
        stream = self.generator.options(stream=True).generate.remote(question, passages)
        try:
            async for event in stream:
                yield event.data["text"] if event.kind == "token" else event.data
        finally:
            stream.cancel()

    @api.post("/v1/answer")
    async def answer(self, body: AnswerBody, request: Request, x_session_id: str | None = SessionHeader) -> StreamingResponse:
        """Server-sent events: hit*, then token* with citation as each [n] first appears, then done (or error)."""
        answer_request = AnswerRequest(body.request(x_session_id), body.retrieval_budget_s, body.generation_budget_s)
        model_id = (await _remote(self.generator.info))["model_id"]
        orchestrator = AnswerOrchestrator(self.pipeline.search, self._generate, model_id, self.traces)
        started = time.perf_counter()

        async def events():
            status = 499  # until the stream ends otherwise: the client went away
            stream = orchestrator.stream(answer_request)
            try:
                async for event, data in stream:
                    if await request.is_disconnected():
                        break  # closing the stream below cancels generation upstream
                    if event == "error" and "status" in data:
                        status = data["status"]
                    elif event == "done":
                        status = 200
                    yield _sse(event, data)
            finally:
                await stream.aclose()
                self.metrics.request("/v1/answer", status, time.perf_counter() - started)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # -- session scopes ---------------------------------------------------------------------
    @api.put("/v1/scope")
    async def put_scope(self, body: ScopeBody, x_session_id: str = Header(max_length=128)) -> JSONResponse:
        scope = await _remote(self.scopes.put, x_session_id, body.to_scope())
        return JSONResponse({"session_id": x_session_id, "scope": msgspec.to_builtins(scope)})

    @api.get("/v1/scope")
    async def get_scope(self, x_session_id: str = Header(max_length=128)) -> JSONResponse:
        scope = await _remote(self.scopes.get, x_session_id)
        if scope is None:
            raise Problem(404, "Unknown session", f"no scope is set for session {x_session_id!r} (or it expired)")
        return JSONResponse({"session_id": x_session_id, "scope": msgspec.to_builtins(scope)})

    @api.delete("/v1/scope", status_code=204)
    async def delete_scope(self, x_session_id: str = Header(max_length=128)) -> Response:
        if not await _remote(self.scopes.delete, x_session_id):
            raise Problem(404, "Unknown session", f"no scope is set for session {x_session_id!r}")
        return Response(status_code=204)

    # -- files ------------------------------------------------------------------------------
    @api.post("/v1/chunks")
    async def file_chunks(self, body: ChunksBody) -> Response:
        """The indexed chunks of one file overlapping a line range; 404 when the uri is not an indexed file."""
        rows, truncated = await ask_idempotent(_remote, self.hydrator.file_chunks, body.uri, body.start_line, body.end_line, MAX_FILE_CHUNKS)
        chunks = [{"id": r.id, "uri": r.uri, "start_line": r.start_line, "end_line": r.end_line, "symbol": r.symbol, "lang": r.lang, "text": r.text} for r in rows]
        return JSONResponse({"uri": rows[0].uri if rows else body.uri, "chunks": chunks, "truncated": truncated})

    @api.post("/v1/file")
    async def file_lines(self, body: FileBody) -> Response:
        """Lines of a live indexed file (at most MAX_LINES); 404 when not indexed, 400 when it resolves outside the repo."""
        lines = await ask_idempotent(_remote, self.hydrator.file_lines, body.uri, body.start_line, body.end_line, MAX_LINES)
        return Response(msgspec.json.encode(lines), media_type="application/json")

    # -- the code graph -----------------------------------------------------------------------
    async def _scope(self, body: SymbolBody, session_id: str | None) -> Scope:
        if body.scope is not None:
            scope = body.scope.to_scope()
        else:
            scope = await ask_idempotent(_remote, self.scopes.get, session_id) if session_id else None
        return scope or Scope()

    @api.post("/v1/definitions")
    async def definitions(self, body: SymbolBody, x_session_id: str | None = SessionHeader) -> JSONResponse:
        """Where a symbol is defined (classes and functions first, then methods, non-test code first), from the code graph."""
        found = await ask_idempotent(_remote, self.hydrator.definitions, body.symbol, await self._scope(body, x_session_id), body.limit)
        return JSONResponse({"symbol": body.symbol, "definitions": found})

    @api.post("/v1/references")
    async def references(self, body: SymbolBody, x_session_id: str | None = SessionHeader) -> JSONResponse:
        """Where a symbol's name is called, imported or subclassed, with the enclosing definition and the line."""
        found = await ask_idempotent(_remote, self.hydrator.references, body.symbol, await self._scope(body, x_session_id), body.limit)
        return JSONResponse({"symbol": body.symbol, "references": found, "truncated": len(found) == body.limit})

    @api.post("/v1/outline")
    async def outline(self, body: OutlineBody) -> JSONResponse:
        """The definitions of one indexed file with their lines; 404 when the uri is not an indexed file."""
        return JSONResponse({"uri": body.uri, "definitions": await ask_idempotent(_remote, self.hydrator.outline, body.uri)})

    # -- reindex ----------------------------------------------------------------------------
    @api.post("/v1/reindex", status_code=202)
    async def reindex(self, body: ReindexBody | None = None) -> JSONResponse:
        """Start an incremental reindex of the served repository (one at a time: 409 while one runs).

        Poll the job at the Location; queries keep running and switch to the new version when it is published."""
        job = await _remote(self.writer.start, (body or ReindexBody()).rebuild)
        return JSONResponse(job, status_code=202, headers={"Location": f"/v1/reindex/{job['job_id']}"})

    @api.get("/v1/reindex/{job_id}")
    async def reindex_job(self, job_id: str) -> JSONResponse:
        """A reindex job: state running|done|failed, stage and progress, the summary once done."""
        job = await ask_idempotent(_remote, self.writer.job, job_id)
        if job is None:
            raise Problem(404, "Unknown job", f"no reindex job {job_id!r} (the newest ones are kept)")
        return JSONResponse(job)

    # -- operations -------------------------------------------------------------------------
    @api.get("/v1/status")
    async def status(self) -> JSONResponse:
        info, shards = await asyncio.gather(_remote(self.hydrator.info), asyncio.gather(*(_remote(s.info) for s in self.shards)))
        return JSONResponse({"index": info, "shards": shards, "freshness": {"built_at": info["built_at"], "commit": info["commit"]}})

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        report = await self.readiness()
        return JSONResponse(report, status_code=503 if report["mode"] == "down" else 200)

    async def readiness(self) -> dict:
        async def probe(name: str, handle) -> tuple[str, dict]:
            try:
                return name, {"ok": True, **(await asyncio.wait_for(_remote(handle.info), 5.0))}
            except Exception as exc:
                return name, probe_error(exc)

        handles = dict(zip(PROBES, (self.embedder, self.hydrator, self.lexical, self.reranker, self.scopes, self.generator, self.writer), strict=True))
        handles |= {f"faiss_shard_{i}": s for i, s in enumerate(self.shards)}
        checks = dict(await asyncio.gather(*(probe(name, handle) for name, handle in handles.items())))
        report = readiness(checks, await self._serve_health(), self.config.expect_gpu)
        self.metrics.faiss_gpu.set(sum(1 for name, c in report["checks"].items() if name.startswith("faiss_shard_") and c.get("gpu")))
        self.metrics.faiss_shards.set(len(self.shards))
        return report

    async def _serve_health(self) -> list[str]:
        """Deployments Serve itself reports unhealthy: a replica that cannot start (say, its index
        files are damaged) is invisible to a probe that another, healthy replica answers."""
        try:
            app = serve.get_replica_context().app_name
            status = await asyncio.wait_for(asyncio.to_thread(serve.status), 5.0)
            deployments = status.applications[app].deployments
        except Exception:  # the controller is busy: no opinion
            return []
        return [f"{name} {d.status.value.lower()}: {status_headline(d.message)}"
                for name, d in sorted(deployments.items()) if d.status.value in ("UNHEALTHY", "DEPLOY_FAILED")]

    @api.get("/metrics")
    async def metrics(self) -> PlainTextResponse:
        return PlainTextResponse(generate_latest(self.metrics.registry).decode(), media_type="text/plain; version=0.0.4")
