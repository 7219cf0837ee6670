"""The stages of one search, free of I/O.

A caller validates a :class:`SearchRequest`, then runs the retrievers, the hydrator and the reranker
wherever they live (in this process for the CLI, on Serve replicas for the HTTP service), records
how long each took in ``plan.timings`` and hands their outputs to the plan, which fuses, selects and
assembles. One implementation of the ranking logic serves both.
"""

from __future__ import annotations

import time
from typing import Sequence

import msgspec

from codeintel.errors import InputError
from codeintel.retrieval.fusion import aggregate_files, collapse_overlaps, reciprocal_rank_fusion
from codeintel.retrieval.query import PreparedQuery, is_auxiliary_path, prepare_query
from codeintel.retrieval.retrievers import RetrieverResult, elapsed_ms
from codeintel.storage.catalog import ChunkRow
from codeintel.storage.scope import Scope, validate_scope
from codeintel.text import is_utf8

__all__ = [
    "MODES", "MAX_K", "MAX_QUERY_CHARS", "FUSION_WEIGHTS", "REPORT_AUXILIARY_FACTOR",
    "SearchRequest", "Hit", "FileHit", "SearchResult", "SearchPlan", "rerank_text",
]

MODES: tuple[str, ...] = ("dense", "bm25", "hybrid", "hybrid+rerank")
MAX_K = 200
MAX_QUERY_CHARS = 20_000
# RRF weights; "path" (files the query names) is a hint, not a retriever of its own standing
FUSION_WEIGHTS = {"dense": 1.0, "bm25": 1.0, "path": 0.5}
# For a pasted bug report, tests/docs/changelogs echo the report's words but are rarely the place to
# change: their fused scores are scaled by this before the cut.
REPORT_AUXILIARY_FACTOR = 0.5
_RETRIEVERS = {"dense": ("dense",), "bm25": ("bm25",), "hybrid": ("dense", "bm25", "path"), "hybrid+rerank": ("dense", "bm25", "path")}


class SearchRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    query: str
    k: int = 10
    mode: str = "hybrid+rerank"
    scope: Scope = Scope()

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
    skipped_retrievers: dict[str, str] = {}  # retriever -> why it did not answer (timeout, error)
    retriever_ids: dict[str, list[int]] = {}  # each first-stage retriever's own top-k chunk ids (for traces)


def rerank_text(row: ChunkRow) -> str:
    head = f"{row.uri} {row.symbol}".strip()
    return f"{head}\n{row.context}\n{row.text}" if row.context else f"{head}\n{row.text}"



class SearchPlan:
    def __init__(self, request: SearchRequest, *, rerank_depth: int = 30, rerank_weight: float = 0.5) -> None:
        t = time.perf_counter()
        self.request = request.validate()
        self.prepared: PreparedQuery = prepare_query(self.request.query)
        self.rerank_weight = rerank_weight
        self.reranks = self.request.mode == "hybrid+rerank"
        self.depth = max(self.request.k, rerank_depth) if self.reranks else self.request.k
        self.fetch = min(MAX_K * 2, max(self.depth * 2, 50))  # room for overlap collapse and disagreement
        self.retrievers: tuple[str, ...] = _RETRIEVERS[self.request.mode]
        self.timings: dict[str, float] = {"prepare": elapsed_ms(t)}
        self._results: list[RetrieverResult] = []
        self._scores: dict[int, float] = {}
        self.skipped: dict[str, str] = {}

    @property
    def scope(self) -> Scope:
        return self.request.scope

    @property
    def demotes(self) -> bool:
        return self.prepared.is_report and len(self.retrievers) > 1

    def fuse(self, results: Sequence[RetrieverResult], skipped: dict[str, str] | None = None) -> list[int]:
        """Ids to hydrate, best first. Retrievers that failed are left out and reported."""
        t = time.perf_counter()
        self._results = list(results)
        self.skipped = dict(skipped or {})
        for result in results:
            self.timings.update(result.ms)
        ranked = {r.name: r.hits for r in results}
        if len(ranked) > 1:
            fused = reciprocal_rank_fusion(ranked, weights=FUSION_WEIGHTS)
        else:
            fused = next(iter(ranked.values()), [])
        self._scores = dict(fused)
        self.timings["fuse"] = elapsed_ms(t)
        return [i for i, _ in fused[: self.depth * 2]]

    def select(self, rows: Sequence[ChunkRow]) -> list[ChunkRow]:
        """Hydrated rows (scope applied) -> the candidates, overlaps collapsed, report prior applied."""
        kept = collapse_overlaps(list(rows))
        if self.demotes:
            kept = self._demote(kept)
        return kept[: self.depth]

    def _demote(self, rows: list[ChunkRow]) -> list[ChunkRow]:
        self._scores = {
            row.id: self._scores[row.id] * (REPORT_AUXILIARY_FACTOR if is_auxiliary_path(row.uri) else 1.0) for row in rows
        }
        return sorted(rows, key=lambda row: -self._scores[row.id])

    def rerank_inputs(self, rows: Sequence[ChunkRow]) -> list[str]:
        return [rerank_text(row) for row in rows]

    def apply_rerank(self, rows: Sequence[ChunkRow], logits: Sequence[float]) -> list[ChunkRow]:
        """Fuse the cross-encoder's order with the hybrid order by RRF (at ``rerank_weight``).

        The cross-encoder was trained on web questions, not code: alone, or at equal weight, it
        loses to hybrid on code; at 0.5 it gains (dev flask qa: MRR .851 -> .870, R@10 .822 -> .858).
        """
        by_rerank = sorted(((row.id, float(x)) for row, x in zip(rows, logits, strict=True)), key=lambda kv: -kv[1])
        hybrid_order = [(row.id, self._scores[row.id]) for row in rows]
        final = reciprocal_rank_fusion({"hybrid": hybrid_order, "rerank": by_rerank}, weights={"rerank": self.rerank_weight})
        by_id = {row.id: row for row in rows}
        self._scores = dict(final)
        out = [by_id[i] for i, _ in final]
        if self.demotes:
            out = self._demote(out)
        return out

    def result(self, rows: Sequence[ChunkRow], version: str) -> SearchResult:
        ranks = {r.name: {id_: n for n, (id_, _) in enumerate(r.hits, 1)} for r in self._results}
        hits = [
            Hit(
                id=row.id,
                uri=row.uri,
                start_line=row.start_line,
                end_line=row.end_line,
                lang=row.lang,
                symbol=row.symbol,
                score=round(float(self._scores[row.id]), 6),
                text=row.text,
                ranks={name: r[row.id] for name, r in ranks.items() if row.id in r},
            )
            for row in rows[: self.request.k]
        ]
        first = {}
        for n, h in enumerate(hits):
            first.setdefault(h.uri, n)
        files = [FileHit(uri, score, first[uri]) for uri, score in aggregate_files([(h.uri, h.score) for h in hits])]
        self.timings["total"] = round(sum(v for k, v in self.timings.items() if k != "total"), 3)
        return SearchResult(
            query=self.request.query,
            mode=self.request.mode,
            hits=hits,
            files=files,
            timings_ms=self.timings,
            retrievers={r.name: len(r.hits) for r in self._results},
            version=version,
            skipped_retrievers=self.skipped,
            retriever_ids={r.name: [id_ for id_, _ in r.hits[: self.request.k]] for r in self._results},
        )
