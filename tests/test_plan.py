"""The ranking steps of one search (codeintel.retrieval.plan), on hand-made candidates."""

from __future__ import annotations

from codeintel.config import SearchSettings
from codeintel.retrieval.plan import SearchPlan, SearchRequest
from codeintel.storage.catalog import ChunkRow


def row(id_: int, uri: str, centrality: float = 0.0) -> ChunkRow:
    return ChunkRow(id_, "repo", None, uri, 1, 5, "python", "h", "", "", "text", centrality=centrality)


def test_the_import_prior_puts_the_widely_imported_module_first_among_near_equals():
    rows = [row(1, "pkg/api.py"), row(2, "pkg/core.py", centrality=1.0), row(3, "pkg/leaf.py")]
    scores = {1: 0.0164, 2: 0.0161, 3: 0.0100}
    plan = SearchPlan.create(SearchRequest("why does core break", 3, "hybrid"), SearchSettings(import_prior=0.3))
    kept, fused = plan.select(rows, scores)
    assert [r.id for r in kept] == [2, 1, 3] and fused[2] > fused[1]
    # a wide gap is not closed, and the modes without the code graph take no prior
    assert [r.id for r in plan.select(rows, {1: 0.03, 2: 0.0161, 3: 0.01})[0]] == [1, 2, 3]
    bm25 = SearchPlan.create(SearchRequest("why does core break", 3, "bm25"), SearchSettings(import_prior=0.3))
    assert [r.id for r in bm25.select(rows, scores)[0]] == [1, 2, 3]
