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


def test_a_long_query_is_cut_once_and_never_crowds_out_the_passage():
    reranker = OnnxCrossEncoder()
    tokenizer = reranker.model.tokenizer
    budget = reranker.spec.max_tokens
    issue = "Dataset.to_netcdf corrupts the file when engine='h5netcdf' is used with compression. " * 1200  # ~100k chars
    fitted = reranker.fit_query(issue)
    assert len(fitted) < 2_000 and issue.startswith(fitted)
    assert reranker.fit_query("how to read a json config file") == "how to read a json config file"
    long_passage = "def to_netcdf(self, path, engine=None):\n    return dump(self, path, engine)\n" * 200
    pair = tokenizer.encode(fitted, long_passage)
    assert len(pair.ids) == budget and pair.type_ids.count(1) >= budget // 2 - 1  # the passage keeps half
    # a passage shorter than the budget gets exactly the pair the whole query would have given
    short_passages = ["def to_netcdf(self, path):\n    ...", "class HttpClient:\n    pass"]
    for p in short_passages:
        assert tokenizer.encode(fitted, p).ids == tokenizer.encode(issue, p).ids
    whole = reranker.model.run([(issue, p) for p in short_passages], 16, lambda logits: logits[:, 0])
    assert np.allclose(reranker.score(issue, short_passages), whole, atol=1e-5)
