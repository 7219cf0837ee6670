"""The read side of a published index, as the Serve deployments hold it, without Ray."""

from __future__ import annotations

import numpy as np
from codeintel.indexing.pipeline import Indexer
from codeintel.retrieval.query import prepare_query
from codeintel.service.backends import HydratorBackend, LexicalBackend, ShardBackend
from codeintel.storage.scope import Scope

from conftest import SMALL_REPO, write_tree


def test_replicas_switch_to_another_index(tmp_path, real_embedder):
    Indexer(embedder=real_embedder).run(write_tree(tmp_path / "one", SMALL_REPO), tmp_path / "idx1")
    Indexer(embedder=real_embedder).run(write_tree(tmp_path / "two", {"lib/only_here.py": "def only_here():\n    return 1\n"}), tmp_path / "idx2")
    hydrator = HydratorBackend(str(tmp_path / "idx1"))
    lexical = LexicalBackend(str(tmp_path / "idx1"))
    shard = ShardBackend(str(tmp_path / "idx1"))
    assert hydrator.info()["repo"] == "one" and lexical.info()["docs"] == hydrator.info()["chunks"]
    for replica in (hydrator, lexical, shard):
        replica.pool.switch(str(tmp_path / "idx2"))
    assert hydrator.info()["repo"] == "two" and hydrator.info()["chunks"] == 1
    hits = lexical.retrieve(prepare_query("only_here"), 5)
    assert [r.uri for r in hydrator.query_by_ids([i for i, _ in hits], Scope())] == ["lib/only_here.py"]
    assert shard.info()["vectors"] == 1
    vector = real_embedder.embed_queries(["only here"])
    assert len(shard.search(vector, 5)) == 1 and shard.search(vector, 5, allowed=[]) == []


def test_faiss_shards_split_the_vectors_by_id(tmp_path, real_embedder):
    Indexer(embedder=real_embedder).run(write_tree(tmp_path / "repo", SMALL_REPO), tmp_path / "idx")
    shards = [ShardBackend(str(tmp_path / "idx"), i, 2) for i in range(2)]
    whole = ShardBackend(str(tmp_path / "idx"))
    assert sum(s.info()["vectors"] for s in shards) == whole.info()["vectors"]
    vector = real_embedder.embed_queries(["json configuration"])
    merged = sorted((hit for s in shards for hit in s.search(vector, 10)), key=lambda kv: -kv[1])
    assert [i for i, _ in merged] == [i for i, _ in whole.search(vector, 10)]
    assert np.all([s.info()["gpu"] is False for s in shards])


def test_health_checks_read_the_current_version(tmp_path, real_embedder):
    Indexer(embedder=real_embedder).run(write_tree(tmp_path / "repo", SMALL_REPO), tmp_path / "idx")
    for backend in (HydratorBackend(str(tmp_path / "idx")), LexicalBackend(str(tmp_path / "idx")), ShardBackend(str(tmp_path / "idx"))):
        backend.check()


def test_calls_that_travel_together_get_the_answers_they_would_get_alone(tmp_path, real_embedder):
    Indexer(embedder=real_embedder).run(write_tree(tmp_path / "repo", SMALL_REPO), tmp_path / "idx")
    shard, hydrator, lexical = ShardBackend(str(tmp_path / "idx")), HydratorBackend(str(tmp_path / "idx")), LexicalBackend(str(tmp_path / "idx"))
    version = hydrator.info()["version"]
    vectors = real_embedder.embed_queries(["json configuration", "load settings", "http client"])
    some = [i for i, _ in shard.search(vectors[:1], 4)]
    calls = [("search", (vectors[0:1], 5, None, version)), ("search", (vectors[1:2], 2, None, None)),
             ("search", (vectors[2:3], 5, some, version)), ("search", (vectors[2:3], 3, None, "no-such-version"))]
    answers = shard.call_many(calls)  # the unscoped ones in one FAISS pass per version
    assert answers[0] == shard.search(vectors[0:1], 5, None, version)
    assert answers[1] == shard.search(vectors[1:2], 2)
    assert answers[2] == shard.search(vectors[2:3], 5, some, version) and {i for i, _ in answers[2]} <= set(some)
    assert isinstance(answers[3], Exception)  # that call's failure, not the batch's

    query = prepare_query("load json config")
    assert lexical.call_many([("retrieve", (query, 5, None, version))]) == [lexical.retrieve(query, 5, None, version)]
    ids = [i for i, _ in answers[0]]
    rows, symbols = hydrator.call_many([("query_by_ids", (ids, Scope(), version)), ("symbol_ids", (("load_config",), version))])
    assert [r.id for r in rows] == [r.id for r in hydrator.query_by_ids(ids, Scope(), version)]
    assert symbols and symbols == hydrator.symbol_ids(("load_config",), version)
    assert isinstance(hydrator.call_many([("file_lines", ("x.py", 1, 2, 10))])[0], Exception)  # not a batched read
