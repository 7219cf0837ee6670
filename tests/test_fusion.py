from __future__ import annotations

import pytest

from codeintel.retrieval.fusion import aggregate_files, collapse_overlaps, reciprocal_rank_fusion


def test_rrf_sums_reciprocal_ranks():
    fused = reciprocal_rank_fusion({"dense": [(1, 0.9), (2, 0.8), (3, 0.7)], "bm25": [(3, 12.0), (1, 9.0)]}, k=60)
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 62)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert [i for i, _ in fused] == [1, 3, 2]


def test_rrf_ties_broken_by_best_rank_then_id():
    fused = reciprocal_rank_fusion({"a": [(7, 1.0), (5, 0.5)], "b": [(5, 1.0), (7, 0.5)]})
    assert [i for i, _ in fused] == [5, 7]  # equal scores, equal best rank: smaller id first
    fused = reciprocal_rank_fusion({"a": [(9, 1.0)], "b": [(8, 1.0)]}, weights={"a": 1.0, "b": 1.0})
    assert [i for i, _ in fused] == [8, 9]


def test_rrf_missing_or_empty_retriever():
    assert reciprocal_rank_fusion({"dense": [(1, 0.5), (2, 0.4)], "bm25": []}) == reciprocal_rank_fusion({"dense": [(1, 0.5), (2, 0.4)]})
    assert reciprocal_rank_fusion({}) == []


def test_rrf_duplicates_count_once_at_best_rank():
    fused = dict(reciprocal_rank_fusion({"dense": [(1, 0.9), (1, 0.8), (2, 0.1)]}, k=60))
    assert fused[1] == pytest.approx(1 / 61)
    assert fused[2] == pytest.approx(1 / 63)


def test_rrf_weights():
    fused = reciprocal_rank_fusion({"dense": [(1, 0.9)], "bm25": [(2, 5.0)]}, weights={"bm25": 2.0})
    assert [i for i, _ in fused] == [2, 1]


class Span:
    def __init__(self, uri, start, end):
        self.uri, self.start_line, self.end_line = uri, start, end


def test_collapse_overlaps_keeps_best_ranked_of_overlapping_chunks():
    items = [Span("a.md", 51, 110), Span("a.md", 1, 60), Span("b.md", 1, 60), Span("a.md", 101, 150), Span("a.md", 111, 160)]
    kept = collapse_overlaps(items)
    assert [(s.uri, s.start_line) for s in kept] == [("a.md", 51), ("b.md", 1), ("a.md", 111)]


def test_aggregate_files_first_appearance_best_score():
    assert aggregate_files([("a.py", 0.9), ("b.py", 0.8), ("a.py", 0.7), ("c.py", 0.1)]) == [("a.py", 0.9), ("b.py", 0.8), ("c.py", 0.1)]
