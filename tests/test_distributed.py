"""Indexing on Ray Data (codeintel.indexing.distributed): a real local Ray, the bundled embedder in
actors, and the same index as a single-process build."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from codeintel.config import Settings
from codeintel.indexing.distributed import RayExecutor
from codeintel.indexing.pipeline import Indexer
from codeintel.retrieval.searcher import Searcher
from codeintel.storage.chunks import embeddings_of, read_chunk_table
from codeintel.storage.layout import IndexLayout

from conftest import SMALL_REPO, write_tree

QUERIES = ["configure logging", "load json config file", "send an http request with retries", "split a path"]


@pytest.fixture(scope="module")
def ray_executor():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield RayExecutor(Settings(), workers=2)  # two embedder actors, one thread each
    finally:
        ray.shutdown()


def _version(index):
    return IndexLayout(index).current()


def _ranked(index, embedder) -> list[list[int]]:
    searcher = Searcher(index, embedder=embedder)
    try:
        return [[h.id for h in searcher.search(q, k=5, mode="hybrid").hits] for q in QUERIES]
    finally:
        searcher.close()


def test_a_ray_build_equals_the_single_process_build_and_stays_incremental(ray_executor, tmp_path, real_embedder):
    repo = write_tree(tmp_path / "repo", SMALL_REPO)
    local = Indexer(embedder=real_embedder, cache_path=tmp_path / "local-cache.duckdb")
    remote = Indexer(executor=ray_executor, cache_path=tmp_path / "ray-cache.duckdb")
    a = local.run(repo, tmp_path / "local")
    b = remote.run(repo, tmp_path / "ray")
    assert b.embedded == a.embedded == b.chunks > 0

    ta, tb = read_chunk_table(_version(tmp_path / "local").chunks), read_chunk_table(_version(tmp_path / "ray").chunks)
    assert tb.column("id").to_pylist() == ta.column("id").to_pylist()
    assert tb.drop_columns(["embedding"]).equals(ta.drop_columns(["embedding"]))
    np.testing.assert_allclose(embeddings_of(tb, 384), embeddings_of(ta, 384), atol=2e-3)
    for graph in ("graph_defs", "graph_refs"):
        assert pq.read_table(getattr(_version(tmp_path / "ray"), graph)).equals(pq.read_table(getattr(_version(tmp_path / "local"), graph)))
    assert _ranked(tmp_path / "ray", real_embedder) == _ranked(tmp_path / "local", real_embedder)

    (repo / "app" / "extra.py").write_text("def parse_toml_config(path):\n    return tomllib.load(open(path, 'rb'))\n")
    a, b = local.run(repo, tmp_path / "local"), remote.run(repo, tmp_path / "ray")
    assert b.changed_files == a.changed_files == 1 and b.embedded == a.embedded == 1  # only the new chunk
    assert _ranked(tmp_path / "ray", real_embedder) == _ranked(tmp_path / "local", real_embedder)
    rebuilt = remote.run(repo, tmp_path / "ray", rebuild=True)
    assert rebuilt.embedded == 0 and rebuilt.reused_embeddings == rebuilt.chunks  # the embedding cache serves all


def test_actors_share_the_cluster_cpus_as_their_threads(ray_executor):
    assert ray_executor.workers == 2 and ray_executor.threads == 1 and not ray_executor.gpu
    assert RayExecutor(Settings()).workers == 1  # default: one actor per node
