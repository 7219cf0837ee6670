from __future__ import annotations

import math

import msgspec
import pytest

from codeintel.retrieval.metrics import chunk_hit, file_metrics, percentile


def test_file_metrics_hand_computed():
    ranked = ["a.py", "b.py", "gold1.py", "c.py", "d.py", "e.py", "gold2.py"]
    m = file_metrics(ranked, {"gold1.py", "gold2.py", "never.py"})
    assert m["R@1"] == 0.0
    assert m["R@5"] == pytest.approx(1 / 3)
    assert m["R@10"] == pytest.approx(2 / 3)
    assert m["Acc@1"] == 0.0
    assert m["MRR"] == pytest.approx(1 / 3)
    dcg = 1 / math.log2(4) + 1 / math.log2(8)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["nDCG@10"] == pytest.approx(dcg / idcg)


def test_file_metrics_perfect_and_empty():
    assert file_metrics(["g.py"], {"g.py"}) == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0, "Acc@1": 1.0, "MRR": 1.0, "nDCG@10": 1.0}
    assert file_metrics([], {"g.py"})["MRR"] == 0.0
    with pytest.raises(ValueError):
        file_metrics(["a"], set())


class H(msgspec.Struct):
    uri: str
    start_line: int
    end_line: int


def test_chunk_hit_overlap_rules():
    spans = [{"path": "x.py", "start_line": 10, "end_line": 12}]
    assert chunk_hit([H("x.py", 1, 9), H("x.py", 12, 20)], spans) == 1.0
    assert chunk_hit([H("x.py", 1, 9), H("y.py", 10, 12)], spans) == 0.0
    assert chunk_hit([H("a.py", 1, 2)] * 10 + [H("x.py", 10, 10)], spans, k=10) == 0.0
    assert chunk_hit([H("x.py", 1, 100)], []) is None


def test_percentile_nearest_rank():
    values = [5, 1, 4, 2, 3]
    assert percentile(values, 0.5) == 3
    assert percentile(values, 0.95) == 5
    assert percentile([], 0.5) == 0.0
