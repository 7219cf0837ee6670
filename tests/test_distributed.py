"""Indexing on Ray Data (codeintel.indexing.distributed): ``codeintel index --ray`` on a real local
Ray, the bundled embedder in actors, and the same index as a single-process build.

The Ray builds run in a subprocess: ray.init() in this process would install Ray's SIGSEGV handler
over the JVM's that earlier tests started here, and HotSpot uses SIGSEGV internally."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq

from codeintel.indexing.pipeline import Indexer
from codeintel.retrieval.searcher import Searcher
from codeintel.storage.chunks import embeddings_of, read_chunk_table
from codeintel.storage.layout import IndexLayout

from conftest import SMALL_REPO, write_tree

QUERIES = ["configure logging", "load json config file", "send an http request with retries", "split a path"]


def ray_index(repo, index, cache, *extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "codeintel.cli", "index", str(repo), "--index", str(index), "--cache", str(cache),
                           "--ray", "--workers", "2", "--json", *extra], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _version(index):
    return IndexLayout(index).current()


def _ranked(index, embedder) -> list[list[int]]:
    searcher = Searcher(index, embedder=embedder)
    try:
        return [[h.id for h in searcher.search(q, k=5, mode="hybrid").hits] for q in QUERIES]
    finally:
        searcher.close()


def test_a_ray_build_equals_the_single_process_build_and_stays_incremental(tmp_path, real_embedder):
    repo = write_tree(tmp_path / "repo", SMALL_REPO)
    local = Indexer(embedder=real_embedder, cache_path=tmp_path / "local-cache.duckdb")
    a = local.run(repo, tmp_path / "local")
    b = ray_index(repo, tmp_path / "ray", tmp_path / "ray-cache.duckdb")  # two embedder actors, one thread each
    assert b["embedded"] == a.embedded == b["chunks"] > 0

    ta, tb = read_chunk_table(_version(tmp_path / "local").chunks), read_chunk_table(_version(tmp_path / "ray").chunks)
    assert tb.column("id").to_pylist() == ta.column("id").to_pylist()
    assert tb.drop_columns(["embedding"]).equals(ta.drop_columns(["embedding"]))
    np.testing.assert_allclose(embeddings_of(tb, 384), embeddings_of(ta, 384), atol=2e-3)
    for graph in ("graph_defs", "graph_refs"):
        assert pq.read_table(getattr(_version(tmp_path / "ray"), graph)).equals(pq.read_table(getattr(_version(tmp_path / "local"), graph)))
    assert _ranked(tmp_path / "ray", real_embedder) == _ranked(tmp_path / "local", real_embedder)

    (repo / "app" / "extra.py").write_text("def parse_toml_config(path):\n    return tomllib.load(open(path, 'rb'))\n")
    a, b = local.run(repo, tmp_path / "local"), ray_index(repo, tmp_path / "ray", tmp_path / "ray-cache.duckdb")
    assert b["changed_files"] == a.changed_files == 1 and b["embedded"] == a.embedded == 1  # only the new chunk
    assert _ranked(tmp_path / "ray", real_embedder) == _ranked(tmp_path / "local", real_embedder)
    rebuilt = ray_index(repo, tmp_path / "ray", tmp_path / "ray-cache.duckdb", "--rebuild")
    assert rebuilt["embedded"] == 0 and rebuilt["reused_embeddings"] == rebuilt["chunks"]  # the embedding cache serves all
