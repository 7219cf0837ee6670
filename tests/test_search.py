"""The one search pipeline: degradations, retries, the version pin and session scopes.

Real indexes and models (a Searcher's ports); faults come from wrappers bound here, in the test.
"""

from __future__ import annotations

import asyncio

import pytest

from codeintel.config import SearchSettings
from codeintel.errors import ReplicaLostError, RetrieversUnavailableError, VersionGoneError
from codeintel.indexing.pipeline import Indexer
from codeintel.rerank import OnnxCrossEncoder
from codeintel.retrieval.plan import SearchRequest
from codeintel.retrieval.query import MAX_QUERY_CHARS
from codeintel.retrieval.search import SearchPipeline
from codeintel.retrieval.searcher import Searcher
from codeintel.service.metrics import ServiceMetrics
from codeintel.storage.scope import Scope

from conftest import SMALL_REPO, write_tree


@pytest.fixture(scope="module")
def searcher(tmp_path_factory, real_embedder):
    root = tmp_path_factory.mktemp("search")
    Indexer(embedder=real_embedder).run(write_tree(root / "repo", SMALL_REPO), root / "idx")
    searcher = Searcher(root / "idx", embedder=real_embedder, reranker=OnnxCrossEncoder())
    yield searcher
    searcher.close()


class Ports:
    """The searcher's real ports with faults bound in: ``fail`` (port -> exception, raised ``times``
    times, or always), ``delay`` (port -> seconds), ``sessions`` (a stand-in scope store)."""

    def __init__(self, inner: Searcher, fail: dict | None = None, times: int | None = None, delay: dict | None = None,
                 sessions: dict | None = None, pins: list[str] | None = None) -> None:
        self.inner, self.fail, self.times, self.delay = inner, fail or {}, times, delay or {}
        self.sessions, self.pins = sessions or {}, pins
        self.shards = inner.shards
        self.calls: dict[str, int] = {}

    def __getattr__(self, name):
        real = getattr(self.inner, name)

        async def call(*args):
            self.calls[name] = self.calls.get(name, 0) + 1
            await asyncio.sleep(self.delay.get(name, 0))
            if name in self.fail and (self.times is None or self.calls[name] <= self.times):
                raise self.fail[name]
            return await real(*args)

        return call

    async def pin(self) -> str:
        return self.pins.pop(0) if self.pins else await self.inner.pin()

    async def session_scope(self, session_id: str) -> Scope | None:
        return self.sessions.get(session_id)


def run(ports, request: SearchRequest, settings: SearchSettings = SearchSettings(), budget_s: float | None = None, metrics=None):
    return asyncio.run(SearchPipeline(ports, settings, metrics).search(request, budget_s))


def test_a_failing_retriever_is_skipped_and_reported(searcher):
    result = run(Ports(searcher, fail={"lexical": RuntimeError("boom")}), SearchRequest("read the json configuration file", 3, "hybrid"))
    assert result.skipped_retrievers == {"bm25": "error: RuntimeError"} and result.hits[0].uri == "app/config.py"
    assert "bm25" not in result.retrievers and {"embed", "dense", "fuse", "hydrate", "total"} <= set(result.timings_ms)


def test_a_late_retriever_is_cut_at_its_timeout_and_the_budget_caps_it(searcher):
    ports = Ports(searcher, delay={"embed": 1.0})
    result = run(ports, SearchRequest("read the json configuration file", 3, "hybrid"), SearchSettings(retriever_timeout_s=0.3))
    assert result.skipped_retrievers == {"dense": "timeout: no answer within 0.3 s"}
    result = run(ports, SearchRequest("read the json configuration file", 3, "hybrid"), budget_s=0.2)
    assert result.skipped_retrievers == {"dense": "timeout: no answer within 0.2 s"}


def test_every_retriever_failing_is_an_error_not_an_empty_result(searcher):
    ports = Ports(searcher, fail={"lexical": RuntimeError("x"), "embed": RuntimeError("y")})
    with pytest.raises(RetrieversUnavailableError, match="every retriever failed"):
        run(ports, SearchRequest("configure logging", 3, "hybrid"))


def test_a_call_whose_replica_died_is_asked_once_more(searcher):
    ports = Ports(searcher, fail={"hydrate": ReplicaLostError("actor died"), "lexical": ReplicaLostError("actor died")}, times=1)
    result = run(ports, SearchRequest("configure logging", 3, "hybrid"))
    assert result.skipped_retrievers == {} and ports.calls["hydrate"] == 2 and ports.calls["lexical"] == 2
    ports = Ports(searcher, fail={"hydrate": ReplicaLostError("actor died")}, times=2)
    with pytest.raises(ReplicaLostError):
        run(ports, SearchRequest("configure logging", 3, "hybrid"))


def test_a_pruned_version_reruns_the_search_on_the_new_one(searcher):
    metrics = ServiceMetrics()
    ports = Ports(searcher, fail={"hydrate": VersionGoneError("gone")}, times=1, pins=["old-version"])
    result = run(ports, SearchRequest("configure logging", 3, "hybrid"), metrics=metrics)
    assert result.version == searcher.paths.name and metrics.version_retries._value.get() == 1


def test_a_failing_or_late_reranker_leaves_the_fused_order(searcher):
    request = SearchRequest("how is logging configured", 3, "hybrid+rerank")
    hybrid = run(Ports(searcher), SearchRequest("how is logging configured", 3, "hybrid"))
    failed = run(Ports(searcher, fail={"rerank": RuntimeError("model gone")}), request)
    assert failed.skipped_retrievers == {"rerank": "error: RuntimeError"}
    assert [h.id for h in failed.hits] == [h.id for h in hybrid.hits][: len(failed.hits)]
    late = run(Ports(searcher, delay={"rerank": 1.0}), request, SearchSettings(rerank_timeout_s=0.2))
    assert late.skipped_retrievers["rerank"].startswith("timeout") and late.hits


def test_the_reranker_sees_only_the_head_and_the_rest_follows_in_hybrid_order(searcher):
    seen: list[int] = []

    class Reversing(Ports):
        async def rerank(self, query: str, passages: list[str]) -> list[float]:
            seen.append(len(passages))
            return [float(n) for n in range(len(passages))]  # the last of the head is the best

    hybrid = run(Ports(searcher), SearchRequest("configure logging", 6, "hybrid"))
    result = run(Reversing(searcher), SearchRequest("configure logging", 6, "hybrid+rerank"), SearchSettings(rerank_depth=3))
    assert seen == [3] and len(hybrid.hits) == 5  # every chunk of the small repository
    assert [h.id for h in result.hits][3:] == [h.id for h in hybrid.hits][3:]
    assert {h.id for h in result.hits[:3]} == {h.id for h in hybrid.hits[:3]}
    assert all(a.score >= b.score for a, b in zip(result.hits, result.hits[1:])) and result.hits[2].score > result.hits[3].score


def test_the_session_scope_applies_unless_the_request_names_one(searcher):
    ports = Ports(searcher, sessions={"s1": Scope(languages=("javascript",))})
    scoped = run(ports, SearchRequest("renderPage configure_logging", 5, "bm25", session_id="s1"))
    assert {h.uri for h in scoped.hits} == {"web/main.js"} and scoped.scope.languages == ("javascript",)
    assert "session" in scoped.timings_ms
    explicit = run(ports, SearchRequest("renderPage configure_logging", 5, "bm25", scope=Scope(), session_id="s1"))
    assert "app/logging_setup.py" in {h.uri for h in explicit.hits}
    unknown = run(ports, SearchRequest("renderPage configure_logging", 5, "bm25", session_id="nobody"))
    assert unknown.scope == Scope() and len({h.uri for h in unknown.hits}) > 1


def test_a_long_report_is_condensed_and_says_so(searcher):
    report = "HttpClient.send_request raises ConnectionError after retries.\n" + "log line with nothing special\n" * 3000
    assert len(report) < MAX_QUERY_CHARS
    result = run(Ports(searcher), SearchRequest(report, 3, "hybrid+rerank"))
    assert "condense" in result.timings_ms and result.hits[0].uri == "app/http_client.py"
    short = run(Ports(searcher), SearchRequest("http client retries", 3, "hybrid"))
    assert "condense" not in short.timings_ms
