from __future__ import annotations

import numpy as np
import pytest

from codeintel.config import DenseSettings, EmbeddingContract
from codeintel.errors import IndexFormatError
from codeintel.storage.dense import DenseIndex

CONTRACT = EmbeddingContract(model_id="test/model", weights="test-weights", dim=16)


def unit(rng, n, d=16):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_flat_exact_search_and_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    vecs = unit(rng, 500)
    ids = np.arange(10_000, 10_500)
    index = DenseIndex.build(vecs, ids, CONTRACT, DenseSettings())
    assert index.manifest.index_type == "Flat"
    hits = index.search(vecs[[3, 7]], 5)
    assert hits[0][0][0] == 10_003 and hits[1][0][0] == 10_007
    assert hits[0][0][1] == pytest.approx(1.0, abs=1e-5)
    index.save(tmp_path / "dense")
    loaded = DenseIndex.load(tmp_path / "dense")
    assert loaded.ntotal == 500 and loaded.manifest.model_id == "test/model"
    assert loaded.manifest.gpu is False and loaded.manifest.gpu_reason
    assert loaded.search(vecs[[3]], 1)[0][0][0] == 10_003


def test_ivf_above_threshold_with_high_recall():
    rng = np.random.default_rng(1)
    vecs = unit(rng, 3000)
    ids = np.arange(3000)
    index = DenseIndex.build(vecs, ids, CONTRACT, DenseSettings(flat_threshold=1000, nprobe=64))
    assert index.manifest.index_type == "IVFFlat"
    assert index.manifest.params["nlist"] == int(4 * np.sqrt(3000))
    exact = DenseIndex.build(vecs, ids, CONTRACT, DenseSettings())
    queries = unit(rng, 50)
    approx_hits = index.search(queries, 10)
    exact_hits = exact.search(queries, 10)
    recall = np.mean([len({i for i, _ in a} & {i for i, _ in e}) / 10 for a, e in zip(approx_hits, exact_hits)])
    assert recall >= 0.9


def test_update_removes_and_appends_to_secondary():
    rng = np.random.default_rng(2)
    vecs = unit(rng, 100)
    index = DenseIndex.build(vecs, np.arange(100), CONTRACT, DenseSettings())
    new = unit(rng, 5)
    index.updated([0, 1, 2], new, [500, 501, 502, 503, 504], DenseSettings())
    assert index.ntotal == 102
    assert index.manifest.primary_count == 97 and index.manifest.secondary_count == 5
    assert index.search(new[[2]], 1)[0][0][0] == 502
    assert 0 not in {i for i, _ in index.search(vecs[[0]], 10)[0]}
    assert index.needs_compaction(DenseSettings(compact_min=5, compact_ratio=0.01))
    assert not index.needs_compaction(DenseSettings())


def test_duplicate_ids_across_primary_and_secondary_are_merged():
    rng = np.random.default_rng(3)
    vecs = unit(rng, 10)
    index = DenseIndex.build(vecs, np.arange(10), CONTRACT, DenseSettings())
    index.secondary.add_with_ids(vecs[[4]], np.array([4], dtype=np.int64))
    ids = [i for i, _ in index.search(vecs[[4]], 5)[0]]
    assert ids.count(4) == 1


def test_load_rejects_damaged_manifest(tmp_path):
    index = DenseIndex.build(unit(np.random.default_rng(4), 5), np.arange(5), CONTRACT, DenseSettings())
    index.save(tmp_path / "d")
    (tmp_path / "d" / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError):
        DenseIndex.load(tmp_path / "d")
