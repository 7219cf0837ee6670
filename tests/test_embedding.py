from __future__ import annotations

import msgspec
import numpy as np
import pytest

from codeintel.config import BGE_SMALL
from codeintel.embedding import OnnxEmbedder
from codeintel.errors import ModelUnavailableError
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
