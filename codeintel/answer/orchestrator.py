"""The answer dataflow in one place: retrieve -> passages -> generate -> citations -> trace.

The orchestrator is I/O-agnostic: it is given an async ``search`` (the Serve fan-out, or an
in-process Searcher) and an async ``generate`` (a Generator deployment's stream, or an engine in
this process), enforces the retrieval and generation budgets, turns ``[n]`` in the generated text
into citation events as they first appear, and records one AnswerTrace per request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import AsyncIterator, Awaitable, Callable

import msgspec

from codeintel.answer.citations import REFUSAL, CitationTracker, attribute
from codeintel.answer.extractive import Passage
from codeintel.answer.traces import AnswerTrace, TraceWriter, now
from codeintel.errors import problem_of
from codeintel.retrieval.plan import SearchRequest, SearchResult
from codeintel.storage.scope import Scope

__all__ = ["AnswerRequest", "AnswerOrchestrator"]

SearchFn = Callable[[SearchRequest, float], Awaitable[SearchResult]]  # (request, retrieval budget in s)
GenerateFn = Callable[[str, list[Passage]], AsyncIterator[str | dict]]  # text deltas, and optionally a usage dict


_GRACE_S = 2.0


class AnswerRequest(msgspec.Struct, frozen=True):
    search: SearchRequest  # its session_id, if any, is the answer's session
    retrieval_budget_s: float = 20.0
    generation_budget_s: float = 120.0


class AnswerOrchestrator:
    def __init__(self, search: SearchFn, generate: GenerateFn, model_id: str, traces: TraceWriter | None = None) -> None:
        self.search = search
        self.generate = generate
        self.model_id = model_id
        self.traces = traces

    async def stream(self, request: AnswerRequest) -> AsyncIterator[tuple[str, dict]]:
        """(event, data) pairs: hit*, token*, citation*, error?, done. Never buffers the answer.

        An error event carries the HTTP status the failure would have had as a plain request."""
        trace_id = uuid.uuid4().hex
        started_at, t0 = now(), time.perf_counter()
        result: SearchResult | None = None
        fallbacks: list[str] = []
        error: str | None = None
        tokens_out = 0
        answer: list[str] = []  # kept for post-hoc attribution; every delta is streamed as it comes
        usage: dict = {}
        ttft_ms: float | None = None
        tracker = CitationTracker([])
        try:
            try:
                # the search itself cuts late retrievers at the budget; the grace covers hydration
                result = await asyncio.wait_for(self.search(request.search, request.retrieval_budget_s),
                                                request.retrieval_budget_s + _GRACE_S)
            except asyncio.TimeoutError:
                error = f"retrieval exceeded its budget of {request.retrieval_budget_s} s"
                yield "error", {"message": error, "status": 504}
                return
            fallbacks = sorted(result.skipped_retrievers)
            passages = [Passage(n, h.uri, h.start_line, h.end_line, h.symbol, h.text) for n, h in enumerate(result.hits, 1)]
            for p, hit in zip(passages, result.hits, strict=True):
                yield "hit", {"n": p.n, "uri": p.uri, "start_line": p.start_line, "end_line": p.end_line, "symbol": p.symbol, "score": hit.score}
            shown, tracker = passages, CitationTracker(passages)
            deadline = time.perf_counter() + request.generation_budget_s
            stream = self.generate(request.search.query, passages)
            try:
                async for delta in stream:
                    if isinstance(delta, dict):  # the engine's usage: prompt tokens, model parameters
                        usage = delta
                        if delta.get("passages"):  # what the prompt showed: the lines cited, under the hits' numbers
                            shown = list(delta["passages"])
                            tracker = CitationTracker(shown)
                        continue
                    if ttft_ms is None:
                        ttft_ms = (time.perf_counter() - t0) * 1000
                    tokens_out += 1
                    answer.append(delta)
                    yield "token", {"text": delta}
                    for p in tracker.feed(delta):
                        yield "citation", {"n": p.n, "uri": p.uri, "start_line": p.start_line, "end_line": p.end_line}
                    if time.perf_counter() > deadline:
                        fallbacks.append("generation_budget")
                        yield "error", {"message": f"generation stopped at its budget of {request.generation_budget_s} s"}
                        break
            finally:
                await _aclose(stream)
            for p in tracker.finish():
                yield "citation", {"n": p.n, "uri": p.uri, "start_line": p.start_line, "end_line": p.end_line}
            text = "".join(answer)
            # an answer that cited nothing is pointed at what it evidently used; a refusal used nothing
            attributed = [] if tracker.cited or text.lstrip().startswith(REFUSAL) else attribute(text, shown)
            for p in attributed:  # the answer cited nothing: point at the passages it evidently used
                yield "citation", {"n": p.n, "uri": p.uri, "start_line": p.start_line, "end_line": p.end_line, "attributed": True}
            seconds = time.perf_counter() - t0
            yield "done", {
                "trace_id": trace_id,
                "mode": self.model_id,
                "hits": len(passages),
                "cited": [{"n": p.n, "uri": p.uri, "start_line": p.start_line, "end_line": p.end_line, "attributed": p in attributed}
                          for p in tracker.cited_passages + attributed],
                "unknown_citations": tracker.unknown,
                "usage": {"tokens_in": usage.get("tokens_in"), "tokens_out": tokens_out,
                          "ttft_ms": None if ttft_ms is None else round(ttft_ms, 1),
                          "tokens_per_s": round(tokens_out / seconds, 2) if seconds > 0 else None},
                "fallbacks": fallbacks,
                "ms": round(seconds * 1000, 1),
            }
        except (GeneratorExit, asyncio.CancelledError):  # the client went away: generation was stopped
            error = "client disconnected"
            raise
        except Exception as exc:  # reported to the client and the trace, never a half-open stream
            error = f"{type(exc).__name__}: {exc}"
            yield "error", {"message": error, "status": problem_of(exc)[0]}
        finally:
            if self.traces is not None:
                self.traces.write(self._trace(trace_id, request, result, fallbacks, error, tokens_out, usage, ttft_ms, started_at, t0))

    def _trace(self, trace_id, request, result, fallbacks, error, tokens_out, usage, ttft_ms, started_at, t0) -> AnswerTrace:
        seconds = time.perf_counter() - t0
        scope = result.scope if result else (request.search.scope or Scope())
        return AnswerTrace(
            trace_id=trace_id,
            session_id=request.search.session_id,
            query=request.search.query,
            scope=msgspec.to_builtins(scope),
            budgets={"retrieval_s": request.retrieval_budget_s, "generation_s": request.generation_budget_s},
            stage_ms=dict(result.timings_ms) if result else {},
            retriever_ids=dict(result.retriever_ids) if result else {},
            rerank_scores=[h.score for h in result.hits] if result else [],
            model_id=self.model_id,
            model_params=dict(usage.get("model_params") or {}),
            tokens_in=int(usage.get("tokens_in") or 0),
            tokens_out=tokens_out,
            ttft_ms=ttft_ms,
            tps=tokens_out / seconds if seconds > 0 and tokens_out else None,
            mode=request.search.mode,
            fallbacks=fallbacks,
            error=error,
            started_at=started_at,
            ended_at=now(),
        )


async def _aclose(stream) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
