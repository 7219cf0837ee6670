from __future__ import annotations

import msgspec
import numpy as np
import pytest

import codeintel.embedding as embedding
from codeintel.config import BGE_SMALL, EmbeddingContract, EnginesSettings, load_settings
from codeintel.embedding import OnnxEmbedder, VLLMEmbedder, create_embedder
from codeintel.errors import ContractMismatchError, ModelUnavailableError
from codeintel.models import bundled_model_dir


def test_bundled_model_loads_offline_with_contract_shape(real_embedder):
    vectors = real_embedder.embed(["def load_config(path): return json.load(open(path))", "hello world"])
    assert vectors.shape == (2, BGE_SMALL.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert real_embedder.embed([]).shape == (0, BGE_SMALL.dim)
    assert real_embedder.embed_queries(["q"]).shape == (1, BGE_SMALL.dim)


def test_embeddings_are_semantic(real_embedder):
    good, bad = real_embedder.embed(["def load_config(path):\n    return json.load(open(path))", "def add(a, b):\n    return a + b"])
    [q] = real_embedder.embed_queries(["read a json configuration file"])
    assert float(q @ good) > float(q @ bad)


def test_order_and_batching_do_not_change_results(real_embedder):
    texts = [f"def f{i}():\n    return {'x' * (i * 7)}" for i in range(20)]
    a = real_embedder.embed(texts)
    b = real_embedder.embed(texts[::-1])[::-1]
    assert np.allclose(a, b, atol=1e-3)
    single = OnnxEmbedder(BGE_SMALL, batch_size=1).embed(texts[:3])
    assert np.allclose(a[:3], single, atol=2e-2)


def test_long_inputs_are_truncated_not_rejected(real_embedder):
    assert real_embedder.embed(["x = 1\n" * 5000]).shape == (1, BGE_SMALL.dim)


def test_unknown_or_mismatched_models_fail_clearly():
    with pytest.raises(ModelUnavailableError, match="no bundled package"):
        bundled_model_dir("someone/else")
    wrong_dim = OnnxEmbedder(msgspec.structs.replace(BGE_SMALL, dim=768))
    with pytest.raises(ModelUnavailableError, match="384-dim"):
        wrong_dim.embed(["x"])


# vLLM's CPU build serves an embedder. No Hugging Face embedding model is available offline, so the
# bundled chat model stands in: a Qwen2 decoder, last-token pooled, whose hidden size (896) is the
# vector width. Its document similarities are meaningful; query-to-code ones are not (no training).
CODE = {
    "json_load": "def load_config(path):\n    with open(path) as f:\n        return json.load(f)",
    "json_read": "def read_settings(filename):\n    return json.loads(open(filename).read())",
    "add": "def add(a, b):\n    return a + b",
    "prose": "The weather in Paris is sunny and warm today.",
}


@pytest.fixture(scope="module")
def qwen_contract() -> EmbeddingContract:
    pytest.importorskip("vllm")
    from codeintel.answer.hf_model import hf_model_dir

    try:
        folder = hf_model_dir()
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    return EmbeddingContract(model_id="Qwen/Qwen2.5-Coder-0.5B-Instruct", weights=str(folder), dim=896,
                             pooling="last", normalized=True, max_tokens=64, query_prefix="Query: ")


@pytest.fixture(scope="module")
def vllm_embedder(qwen_contract):
    engine = VLLMEmbedder(qwen_contract)  # the one vLLM load of this module
    yield engine
    engine.close()


def test_vllm_embedder_gives_unit_float32_vectors_of_the_contract_width(vllm_embedder):
    vectors = vllm_embedder.embed(list(CODE.values()))
    assert vectors.shape == (4, 896) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vllm_embedder.embed([]).shape == (0, 896)
    queries = vllm_embedder.embed_queries(["read a json configuration file", "add two numbers"])
    assert queries.shape == (2, 896) and queries.dtype == np.float32
    # the query prefix is applied: a query is not the same vector as the bare text
    assert float(vllm_embedder.embed(["add two numbers"])[0] @ queries[1]) < 0.9999


def test_vllm_embeddings_put_related_code_closer_than_unrelated(vllm_embedder):
    v = dict(zip(CODE, vllm_embedder.embed(list(CODE.values()))))
    assert float(v["json_load"] @ v["json_read"]) > float(v["json_load"] @ v["add"]) > float(v["json_load"] @ v["prose"])


def test_vllm_embeddings_do_not_depend_on_batching_and_long_texts_are_truncated(vllm_embedder):
    texts = list(CODE.values())
    batch = vllm_embedder.embed(texts)
    assert float(vllm_embedder.embed(texts[2:3])[0] @ batch[2]) > 0.999
    head = CODE["add"] + "\n" + "x = 1\n" * 5000
    long = vllm_embedder.embed([head, head + "def tail():\n    pass\n", CODE["add"]])
    assert long.shape == (3, 896)
    # only the first max_tokens count: what lies past them changes nothing, what lies before does
    assert float(long[0] @ long[1]) > 0.999 and float(long[0] @ long[2]) < 0.99


def test_vllm_embedder_refuses_a_contract_of_another_width(vllm_embedder, monkeypatch):
    # the loaded engine is reused so the check costs no second load; the check itself is real
    monkeypatch.setattr(embedding, "load_vllm_pooling", lambda *a, **k: vllm_embedder.llm)
    monkeypatch.setattr(VLLMEmbedder, "close", lambda self: None)
    with pytest.raises(ContractMismatchError) as exc:
        VLLMEmbedder(msgspec.structs.replace(vllm_embedder.contract, dim=384))
    assert (exc.value.field, exc.value.index_value, exc.value.configured_value) == ("dim", 384, 896)
    assert "dim" in str(exc.value)


def test_the_engine_is_chosen_in_config(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(embedding, "VLLMEmbedder", lambda contract, **kw: built.append((contract, kw)) or "vllm")
    path = tmp_path / "codeintel.toml"
    path.write_text('[engines]\nembedder = "vllm"\nvllm_device = "gpu"\ngpu_memory_utilization = 0.2\n'
                    '[embedding]\nmodel_id = "Qwen/Qwen3-Embedding-0.6B"\nweights = "Qwen/Qwen3-Embedding-0.6B"\n'
                    'dim = 1024\npooling = "last"\n')
    settings = load_settings(path)
    assert create_embedder(settings.embedding, engine=settings.engines) == "vllm"
    assert built == [(settings.embedding, {"device": "gpu", "gpu_memory_utilization": 0.2})]
    assert create_embedder(settings.embedding, engine="vllm") == "vllm" and built[-1][1]["device"] == "cpu"
    assert isinstance(create_embedder(BGE_SMALL, engine=EnginesSettings()), OnnxEmbedder)
