"""The deployment classes without Ray: Serve's decorator keeps the plain class at ``func_or_class``."""

from __future__ import annotations

import numpy as np

from codeintel.indexing.pipeline import Indexer
from codeintel.retrieval.query import prepare_query
from codeintel.storage.scope import Scope
from deployments.components import FaissShard, Hydrator, LexicalRetriever

from conftest import SMALL_REPO, write_tree


def test_user_config_points_replicas_at_another_index(tmp_path, real_embedder):
    Indexer(embedder=real_embedder).run(write_tree(tmp_path / "one", SMALL_REPO), tmp_path / "idx1")
    Indexer(embedder=real_embedder).run(write_tree(tmp_path / "two", {"lib/only_here.py": "def only_here():\n    return 1\n"}), tmp_path / "idx2")
    hydrator = Hydrator.func_or_class(str(tmp_path / "idx1"))
    lexical = LexicalRetriever.func_or_class(str(tmp_path / "idx1"))
    shard = FaissShard.func_or_class(str(tmp_path / "idx1"))
    assert hydrator.info()["repo"] == "one" and lexical.info()["docs"] == hydrator.info()["chunks"]
    for replica in (hydrator, lexical, shard):
        replica.reconfigure({"index_dir": str(tmp_path / "idx2")})
    assert hydrator.info()["repo"] == "two" and hydrator.info()["chunks"] == 1
    hits = lexical.retrieve(prepare_query("only_here"), 5).hits
    assert [r.uri for r in hydrator.query_by_ids([i for i, _ in hits], Scope())] == ["lib/only_here.py"]
    assert shard.info()["vectors"] == 1
    vector = real_embedder.embed_queries(["only here"])
    assert len(shard.search(vector, 5)) == 1 and shard.search(vector, 5, allowed=[]) == []


def test_faiss_shards_split_the_vectors_by_id(tmp_path, real_embedder):
    Indexer(embedder=real_embedder).run(write_tree(tmp_path / "repo", SMALL_REPO), tmp_path / "idx")
    shards = [FaissShard.func_or_class(str(tmp_path / "idx"), i, 2) for i in range(2)]
    whole = FaissShard.func_or_class(str(tmp_path / "idx"))
    assert sum(s.info()["vectors"] for s in shards) == whole.info()["vectors"]
    vector = real_embedder.embed_queries(["json configuration"])
    merged = sorted((hit for s in shards for hit in s.search(vector, 10)), key=lambda kv: -kv[1])
    assert [i for i, _ in merged] == [i for i, _ in whole.search(vector, 10)]
    assert np.all([s.info()["gpu"] is False for s in shards])
