from __future__ import annotations

import asyncio

import pytest

from codeintel.config import SearchSettings, Settings
from codeintel.errors import InputError, ScopeError
from codeintel.indexing.pipeline import Indexer
from codeintel.rerank import OnnxCrossEncoder
from codeintel.retrieval.plan import SearchRequest
from codeintel.retrieval.query import MAX_QUERY_CHARS
from codeintel.retrieval.search import SearchPipeline
from codeintel.retrieval.searcher import Searcher
from codeintel.storage.scope import Scope

from conftest import write_tree


def corpus_files() -> dict[str, str]:
    files = {f"py/widget_{i}.py": f"def widget_{i}(size):\n    '''Build widget number {i} of the given size.'''\n    return Widget(size) * {i}\n" for i in range(30)}
    files |= {f"js/widget{i}.js": f"export function drawWidget{i}(ctx) {{\n  // draw a widget on the canvas\n  ctx.fill({i});\n}}\n" for i in range(4)}
    files |= {
        "docs/guide.md": "# Guide\n\nTo parse a date, call the parser with an ISO 8601 string.\n",
        "util/dates.py": "import datetime\n\n\ndef parse_iso_date(text):\n    return datetime.date.fromisoformat(text)\n",
    }
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, real_embedder):
    root = tmp_path_factory.mktemp("corpus")
    files = corpus_files() | {
        "tests/test_dates.py": "from util.dates import parse_iso_date\n\n\ndef test_parse_iso_date_rejects_week_dates():\n"
        "    # parse_iso_date fails on week dates like 2024-W01-1\n    parse_iso_date('2024-W01-1')\n",
        "shapes/base.py": "class Widget:\n    def __init__(self, extent):\n        self.extent = extent\n",
    }
    repo = write_tree(root / "repo", files)
    Indexer(embedder=real_embedder).run(repo, root / "idx")
    searcher = Searcher(root / "idx", embedder=real_embedder, reranker=OnnxCrossEncoder())
    yield searcher
    searcher.close()


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid", "hybrid+rerank"])
def test_every_mode_returns_ranked_hits_with_timings(corpus, mode):
    result = corpus.search("build a widget of a given size", k=5, mode=mode)
    assert len(result.hits) == 5 and result.mode == mode
    assert all(h.uri.startswith("py/") for h in result.hits[:3])
    expected = {"dense": {"embed", "dense"}, "bm25": {"bm25"}, "hybrid": {"embed", "dense", "bm25", "fuse"}, "hybrid+rerank": {"rerank"}}[mode]
    assert expected <= set(result.timings_ms) and "total" in result.timings_ms
    assert [f.uri for f in result.files] == list(dict.fromkeys(h.uri for h in result.hits))


def test_scope_applies_before_ranking_so_k_hits_come_back(corpus):
    # unscoped, the 30 python widgets fill the top; scoped to javascript all 4 js files still come back
    for mode in ("dense", "bm25", "hybrid", "hybrid+rerank"):
        result = corpus.search("widget", k=4, mode=mode, scope=Scope(languages=("javascript",)))
        assert sorted(h.uri for h in result.hits) == [f"js/widget{i}.js" for i in range(4)], mode
    result = corpus.search("widget", k=3, mode="hybrid", scope=Scope(include=("py/**",), exclude=("py/widget_1*.py",)))
    assert len(result.hits) == 3 and all(h.uri.startswith("py/") and not h.uri.startswith("py/widget_1") for h in result.hits)
    assert corpus.search("widget", k=3, scope=Scope(include=("nowhere/**",))).hits == []


def test_reranker_changes_the_order(tmp_path, real_embedder):
    Indexer(embedder=real_embedder).run(write_tree(tmp_path / "repo", corpus_files()), tmp_path / "idx")
    query = "how do I parse an ISO 8601 date"
    searcher = Searcher(tmp_path / "idx", embedder=real_embedder, reranker=OnnxCrossEncoder(),
                        settings=Settings(search=SearchSettings(rerank_weight=5.0)))
    try:
        hybrid = searcher.search(query, k=2, mode="hybrid")
        reranked = searcher.search(query, k=2, mode="hybrid+rerank")  # weight 5: the cross-encoder decides
        assert [h.uri for h in hybrid.hits] == ["util/dates.py", "docs/guide.md"]
        # the cross-encoder prefers the prose answer to the code, and the final order follows it
        assert [h.uri for h in reranked.hits] == ["docs/guide.md", "util/dates.py"]
        texts = [f"{h.uri} {h.symbol}".strip() + "\n" + h.text for h in reranked.hits]
        scores = searcher.reranker.score(query, texts)
        assert scores[0] > scores[1]
    finally:
        searcher.close()


def test_path_mentions_pull_in_the_named_file(corpus):
    result = corpus.search('Traceback:\n  File "/site-packages/util/dates.py", line 4, in parse\nValueError', k=3, mode="hybrid")
    assert "util/dates.py" in [h.uri for h in result.hits]
    assert result.retrievers["path"] > 0


def test_names_the_query_uses_pull_in_their_definitions(corpus):
    result = corpus.search("why does widget_17 get the wrong size", k=5, mode="hybrid")
    assert result.hits[0].uri == "py/widget_17.py" and result.hits[0].ranks.get("symbol") == 1
    assert result.retrievers["symbol"] == 1
    plain = corpus.search("why does the widget get the wrong size", k=5, mode="hybrid")
    assert plain.retrievers["symbol"] == 0  # no code name, no lookup
    scoped = corpus.search("widget_17 size", k=3, mode="hybrid", scope=Scope(languages=("javascript",)))
    assert "symbol" not in scoped.hits[0].ranks


def test_what_the_top_hits_call_is_fused_in_from_the_graph_when_asked(corpus):
    expanding = SearchPipeline(corpus, SearchSettings(expand_from=5))
    result = asyncio.run(expanding.search(SearchRequest("why does widget_17 get the wrong size", k=40, mode="hybrid")))
    assert result.retrievers["graph"] >= 1  # widget_17 calls Widget(size): its class, in another file
    assert any(h.uri == "shapes/base.py" and "graph" in h.ranks for h in result.hits)
    assert "graph" not in asyncio.run(expanding.search(SearchRequest("widget_17", k=5, mode="bm25"))).retrievers
    assert "graph" not in corpus.search("why does widget_17 get the wrong size", k=40, mode="hybrid").retrievers  # off by default


def test_bug_reports_prefer_source_over_tests(corpus):
    report = (
        "parse_iso_date fails on week dates. Calling parse_iso_date('2024-W01-1') raises ValueError "
        "instead of returning the Monday of week 1. " * 8
    )
    assert len(report) > 400
    for mode in ("hybrid", "hybrid+rerank"):
        uris = [f.uri for f in corpus.search(report, k=10, mode=mode).files]
        assert "util/dates.py" in uris, mode
        if "tests/test_dates.py" in uris:
            assert uris.index("util/dates.py") < uris.index("tests/test_dates.py"), mode
    assert corpus.search(report, k=10, mode="hybrid").files[0].uri == "util/dates.py"
    # a short question gets no such prior (the import prior off: util/dates.py, the one imported file
    # of this corpus, would outrank the test on that alone)
    plain = SearchPipeline(corpus, SearchSettings(import_prior=0.0))
    short = [f.uri for f in asyncio.run(plain.search(SearchRequest("test for week dates", k=5, mode="hybrid"))).files]
    assert short[0] == "tests/test_dates.py"


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"query": ""}, InputError),
        ({"query": "x" * (MAX_QUERY_CHARS + 1)}, InputError),
        ({"query": "x", "k": 0}, InputError),
        ({"query": "x", "k": 10_000}, InputError),
        ({"query": "x", "mode": "magic"}, InputError),
        ({"query": "x", "scope": Scope(languages=("klingon",))}, ScopeError),
        ({"query": "x", "scope": Scope(include=("src/[",))}, ScopeError),
        ({"query": "bad \udcff\udcfe bytes"}, InputError),  # undecodable argv bytes (surrogateescape)
        ({"query": "x", "k": 10**30}, InputError),
        ({"query": "x", "k": True}, InputError),
        ({"query": "x", "scope": Scope(include=("\udcff*.py",))}, ScopeError),
        ({"query": "x", "scope": Scope(include=("../../etc/*",))}, ScopeError),
    ],
)
def test_bad_requests_are_input_errors(corpus, kwargs, error):
    with pytest.raises(error):
        corpus.search(**kwargs)
