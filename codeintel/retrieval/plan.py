"""The ranking of one search, free of I/O and of mutable state.

:class:`SearchPlan` is made once from a validated request; each step (fuse, select, rerank, result)
takes what the previous one returned and returns a new value. The I/O (retrievers, hydration,
reranker, timeouts, timings) is :mod:`codeintel.retrieval.search`'s.
"""

from __future__ import annotations

import time
from typing import Sequence

import msgspec

from codeintel.errors import InputError
from codeintel.retrieval.fusion import aggregate_files, collapse_overlaps, reciprocal_rank_fusion
from codeintel.config import DEFAULT_MODE, MODES, Mode, SearchSettings
from codeintel.retrieval.query import MAX_QUERY_CHARS, PreparedQuery, is_auxiliary_path, prepare_query
from codeintel.retrieval.retrievers import RetrieverResult, elapsed_ms
from codeintel.storage.catalog import ChunkRow
from codeintel.storage.scope import Scope, validate_scope
from codeintel.text import is_utf8

__all__ = [
    "Mode", "MODES", "MAX_K", "MAX_QUERY_CHARS", "FUSION_WEIGHTS", "HINTS", "REPORT_AUXILIARY_FACTOR",
    "SearchRequest", "Hit", "FileHit", "SearchResult", "SearchPlan", "rerank_text",
]

MAX_K = 200
# RRF weights; "path" (files the query names), "symbol" (definitions of the names it uses, from the
# code graph) and "graph" (what the top hits call) are hints, not retrievers of their own standing
FUSION_WEIGHTS = {"dense": 1.0, "bm25": 1.0, "path": 0.5, "symbol": 0.5, "graph": 0.3}
HINTS = frozenset({"path", "symbol", "graph"})
# For a pasted bug report, tests/docs/changelogs echo the report's words but are rarely the place to
# change: their fused scores are scaled by this before the cut.
REPORT_AUXILIARY_FACTOR = 0.5
_RETRIEVERS = {"dense": ("dense",), "bm25": ("bm25",), "hybrid": ("dense", "bm25", "path", "symbol"),
               "hybrid+rerank": ("dense", "bm25", "path", "symbol")}


class SearchRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    query: str
    k: int = 10
    mode: str = DEFAULT_MODE
    scope: Scope | None = None  # None: the session's stored scope, if any; Scope(): none at all
    session_id: str | None = None

    def validate(self) -> "SearchRequest":
        """The request with the query trimmed; raises InputError/ScopeError naming what is wrong."""
        query = (self.query or "").strip() if isinstance(self.query, str) else ""
        if not query:
            raise InputError("empty query")
        if len(query) > MAX_QUERY_CHARS:
            raise InputError(f"query longer than {MAX_QUERY_CHARS} characters")
        if not is_utf8(query):  # undecodable bytes from argv, or a JSON "\ud800"
            raise InputError("query is not valid UTF-8 text")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise InputError(f"k must be an integer between 1 and {MAX_K}")
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.scope is not None:
            validate_scope(self.scope)
        return msgspec.structs.replace(self, query=query)


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
    retrievers: dict[str, int]  # hits per retriever that answered
    version: str
    scope: Scope = Scope()  # the scope applied: the request's own, or its session's
    skipped_retrievers: dict[str, str] = {}  # retriever -> why it did not answer (timeout, error)
    retriever_ids: dict[str, list[int]] = {}  # each first-stage retriever's own top-k chunk ids (for traces)


def rerank_text(row: ChunkRow) -> str:
    head = f"{row.uri} {row.symbol}".strip()
    return f"{head}\n{row.context}\n{row.text}" if row.context else f"{head}\n{row.text}"



class SearchPlan(msgspec.Struct, frozen=True):
    """What one validated request asks of the stages: retrievers, depths, weights."""

    request: SearchRequest  # validated, with its scope resolved
    prepared: PreparedQuery
    depth: int  # candidates kept for the cut (and the reranker)
    fetch: int  # hits asked of each first-stage retriever
    retrievers: tuple[str, ...]
    rerank_depth: int  # the head of the candidates the reranker re-scores; the rest keep their order below it
    rerank_weight: float
    import_prior: float
    prepare_ms: float

    @classmethod
    def create(cls, request: SearchRequest, settings: SearchSettings = SearchSettings()) -> "SearchPlan":
        t = time.perf_counter()
        request = request.validate()
        if request.scope is None:
            request = msgspec.structs.replace(request, scope=Scope())
        depth = max(request.k, settings.rerank_depth) if request.mode == "hybrid+rerank" else request.k
        return cls(
            request=request,
            prepared=prepare_query(request.query),
            depth=depth,
            fetch=min(MAX_K * 2, max(depth * 2, 50)),  # room for overlap collapse and disagreement
            retrievers=_RETRIEVERS[request.mode],
            rerank_depth=settings.rerank_depth,
            rerank_weight=settings.rerank_weight,
            import_prior=settings.import_prior,
            prepare_ms=elapsed_ms(t),
        )

    @property
    def scope(self) -> Scope:
        return self.request.scope or Scope()

    @property
    def reranks(self) -> bool:
        return self.request.mode == "hybrid+rerank"

    @property
    def uses_graph(self) -> bool:
        """The modes that read the code graph: its symbol retriever, callee expansion, import prior."""
        return "symbol" in self.retrievers

    @property
    def demotes(self) -> bool:
        return self.prepared.is_report and len(self.retrievers) > 1

    def fuse(self, results: Sequence[RetrieverResult]) -> dict[int, float]:
        """Fused scores, best first; the first ``depth * 2`` are worth hydrating."""
        ranked = {r.name: r.hits for r in results}
        fused = reciprocal_rank_fusion(ranked, weights=FUSION_WEIGHTS) if len(ranked) > 1 else next(iter(ranked.values()), [])
        return dict(fused[: self.depth * 2])

    def select(self, rows: Sequence[ChunkRow], scores: dict[int, float]) -> tuple[list[ChunkRow], dict[int, float]]:
        """Hydrated rows (scope applied) -> the candidates: import prior, overlaps collapsed, report prior."""
        if self.import_prior and self.uses_graph:
            scores = {row.id: scores[row.id] * (1 + self.import_prior * row.centrality) for row in rows}
            rows = sorted(rows, key=lambda row: -scores[row.id])
        kept = collapse_overlaps(list(rows))
        if self.demotes:
            kept, scores = self._demote(kept, scores)
        return kept[: self.depth], scores

    def _demote(self, rows: list[ChunkRow], scores: dict[int, float]) -> tuple[list[ChunkRow], dict[int, float]]:
        demoted = {row.id: scores[row.id] * (REPORT_AUXILIARY_FACTOR if is_auxiliary_path(row.uri) else 1.0) for row in rows}
        return sorted(rows, key=lambda row: -demoted[row.id]), demoted

    def rerank_inputs(self, rows: Sequence[ChunkRow]) -> list[str]:
        """The reranker's passages: the first ``rerank_depth`` candidates only, so its cost does not
        grow with k."""
        return [rerank_text(row) for row in rows[: self.rerank_depth]]

    def apply_rerank(self, rows: Sequence[ChunkRow], scores: dict[int, float], logits: Sequence[float]) -> tuple[list[ChunkRow], dict[int, float]]:
        """Fuse the cross-encoder's order of the head with its hybrid order by RRF (at ``rerank_weight``);
        the candidates past the head follow in hybrid order.

        The cross-encoder was trained on web questions, not code: alone, or at equal weight, it
        loses to hybrid on code; at 0.5 it gains (dev flask qa: MRR .851 -> .870, R@10 .822 -> .858).
        """
        head, tail = list(rows[: len(logits)]), list(rows[len(logits) :])
        by_rerank = sorted(((row.id, float(x)) for row, x in zip(head, logits, strict=True)), key=lambda kv: -kv[1])
        hybrid_order = [(row.id, scores[row.id]) for row in head]
        final = reciprocal_rank_fusion({"hybrid": hybrid_order, "rerank": by_rerank}, weights={"rerank": self.rerank_weight})
        by_id = {row.id: row for row in head}
        out, fused = [by_id[i] for i, _ in final], dict(final)
        if self.demotes:
            out, fused = self._demote(out, fused)
        if tail:  # the tail's hybrid scores, scaled to fall below the head's last
            scale = 0.99 * min(fused.values(), default=1.0) / max(scores[row.id] for row in tail)
            fused |= {row.id: scores[row.id] * scale for row in tail}
        return out + tail, fused

    def result(self, rows: Sequence[ChunkRow], scores: dict[int, float], results: Sequence[RetrieverResult],
               skipped: dict[str, str], timings_ms: dict[str, float], version: str) -> SearchResult:
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
            for row in rows[: self.request.k]
        ]
        first: dict[str, int] = {}
        for n, h in enumerate(hits):
            first.setdefault(h.uri, n)
        files = [FileHit(uri, score, first[uri]) for uri, score in aggregate_files([(h.uri, h.score) for h in hits])]
        timings = {**timings_ms, "total": round(sum(timings_ms.values()), 3)}
        return SearchResult(
            query=self.request.query,
            mode=self.request.mode,
            hits=hits,
            files=files,
            timings_ms=timings,
            retrievers={r.name: len(r.hits) for r in results},
            version=version,
            scope=self.scope,
            skipped_retrievers=dict(skipped),
            retriever_ids={r.name: [id_ for id_, _ in r.hits[: self.request.k]] for r in results},
        )
