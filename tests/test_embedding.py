from __future__ import annotations

import numpy as np
import pytest

from codeintel.config import MINILM_L6, EmbeddingContract
from codeintel.embedding import SentenceTransformerEmbedder, bundled_model_dir
from codeintel.errors import ModelUnavailableError


def test_bundled_model_loads_offline_with_contract_shape(real_embedder):
    vectors = real_embedder.embed(["def load_config(path): return json.load(open(path))", "hello world"])
    assert vectors.shape == (2, MINILM_L6.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert real_embedder.embed([]).shape == (0, MINILM_L6.dim)


def test_embeddings_are_semantic(real_embedder):
    q, good, bad = real_embedder.embed(["read a json configuration file", "def load_config(path):\n    return json.load(open(path))", "def add(a, b):\n    return a + b"])
    assert float(q @ good) > float(q @ bad)


def test_long_inputs_are_truncated_not_rejected(real_embedder):
    assert real_embedder.embed(["x = 1\n" * 5000]).shape == (1, MINILM_L6.dim)


def test_unknown_or_mismatched_models_fail_clearly(tmp_path):
    with pytest.raises(ModelUnavailableError, match="no bundled package"):
        bundled_model_dir("someone/else")
    wrong_dim = SentenceTransformerEmbedder(EmbeddingContract(model_id=MINILM_L6.model_id, dim=768))
    with pytest.raises(ModelUnavailableError, match="384-dim"):
        wrong_dim.embed(["x"])
