from __future__ import annotations

import numpy as np
import pytest

import codeintel.rerank as rerank
from codeintel.config import EnginesSettings
from codeintel.errors import ModelUnavailableError
from codeintel.rerank import MS_MARCO_MINILM_L12, OnnxCrossEncoder, OnnxLateInteraction, RerankerSpec, VLLMReranker, create_reranker


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


def test_late_interaction_scores_each_passage_by_maxsim_within_its_token_budget():
    reranker = OnnxLateInteraction()
    passages = ["def add(a, b):\n    return a + b", "def load_config(path):\n    return json.load(open(path))", "x = 1\n" * 5000]
    scores = reranker.score("load the json config", passages)
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert int(np.argmax(scores)) == 1
    assert scores.max() <= reranker.QUERY_TOKENS + 1e-3  # a sum of cosines, one per (padded) query token
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


# vLLM's Score API. No Hugging Face cross-encoder is available offline, so the bundled chat model
# stands in the way vLLM runs decoder rerankers (Qwen3-Reranker, mxbai-rerank-v2): converted to a
# one-label classifier whose weight is the LM head's "yes" row minus its "no" row. Its scores are
# real logits of a real pair, but an untrained judge's: their order is not asserted.
QWEN_AS_RERANKER = {"convert": "classify",
                    "hf_overrides": {"method": "from_2_way_softmax", "classifier_from_token": ["no", "yes"]}}


@pytest.fixture(scope="module")
def vllm_reranker():
    pytest.importorskip("vllm")
    from codeintel.answer.hf_model import hf_model_dir

    try:
        folder = str(hf_model_dir())
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    engine = VLLMReranker(folder, RerankerSpec(model_id="Qwen/Qwen2.5-Coder-0.5B-Instruct", weights=folder, max_tokens=128),
                          **QWEN_AS_RERANKER)  # the one vLLM load of this module
    yield engine
    engine.close()


def test_vllm_reranker_gives_one_logit_per_passage(vllm_reranker):
    passages = [
        "def add(a, b):\n    return a + b",
        "class HttpClient:\n    def send(self, request): ...",
        "def load_config(path):\n    with open(path) as f:\n        return json.load(f)",
    ]
    scores = vllm_reranker.score("how to read a json config file", passages)
    assert scores.shape == (3,) and scores.dtype == np.float32 and np.isfinite(scores).all()
    assert len(set(scores.tolist())) == 3  # each pair is scored on its own
    assert not ((scores > 0) & (scores < 1)).all()  # logits, not sigmoid probabilities
    assert np.allclose(vllm_reranker.score("how to read a json config file", passages[2:]), scores[2:], atol=0.1)
    assert vllm_reranker.score("q", []).shape == (0,)


def test_vllm_reranker_truncates_and_a_long_query_never_crowds_out_the_passage(vllm_reranker):
    issue = "When I call Dataset.to_netcdf the file is corrupted. " * 200
    scores = vllm_reranker.score(issue, ["short", "def to_netcdf(self):\n" + "    pass\n" * 2000])
    assert scores.shape == (2,) and np.isfinite(scores).all()
    assert scores[0] != scores[1]  # both passages still reach the model past the cut query


def test_the_reranker_engine_is_chosen_in_config(monkeypatch):
    built = []
    monkeypatch.setattr(rerank, "VLLMReranker", lambda model, spec, **kw: built.append((model, spec, kw)) or "vllm")
    engines = EnginesSettings(reranker="vllm", reranker_model="BAAI/bge-reranker-v2-m3", vllm_device="gpu")
    assert create_reranker(engine=engines) == "vllm"
    model, spec, kw = built[-1]
    assert model == spec.model_id == spec.weights == "BAAI/bge-reranker-v2-m3" and spec.max_tokens == MS_MARCO_MINILM_L12.max_tokens
    assert kw == {"device": "gpu", "gpu_memory_utilization": 0.3}
    assert create_reranker(engine="vllm", model="/models/xenc") == "vllm" and built[-1][0] == "/models/xenc"
    assert isinstance(create_reranker(engine=EnginesSettings()), OnnxCrossEncoder)
