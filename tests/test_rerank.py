from __future__ import annotations

import numpy as np

from codeintel.rerank import OnnxCrossEncoder


def test_cross_encoder_ranks_the_relevant_passage_first():
    reranker = OnnxCrossEncoder()
    passages = [
        "def add(a, b):\n    return a + b",
        "class HttpClient:\n    def send(self, request): ...",
        "def load_config(path):\n    with open(path) as f:\n        return json.load(f)",
    ]
    scores = reranker.score("how to read a json config file", passages)
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert int(np.argmax(scores)) == 2
    assert reranker.score("q", []).shape == (0,)


def test_long_passages_are_truncated():
    reranker = OnnxCrossEncoder()
    assert reranker.score("config", ["x = 1\n" * 5000]).shape == (1,)


def test_long_query_and_long_passage_are_both_truncated():
    reranker = OnnxCrossEncoder()
    issue = "When I call Dataset.to_netcdf the file is corrupted. " * 200
    assert reranker.score(issue, ["short", "def to_netcdf(self):\n" + "    pass\n" * 2000]).shape == (2,)
