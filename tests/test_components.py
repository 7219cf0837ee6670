"""The deployment classes without Ray: Serve's decorator keeps the plain class at ``func_or_class``."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from codeintel.errors import VersionGoneError
from codeintel.indexing.pipeline import Indexer
from codeintel.retrieval.query import prepare_query
from codeintel.storage.layout import IndexLayout
from codeintel.storage.scope import Scope
from codeintel.answer.extractive import Passage
from deployments.components import FaissShard, Generator, Hydrator, LexicalRetriever

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


def test_generator_streams_tokens_then_usage_and_counts_stopped_streams():
    generator = Generator.func_or_class("extractive")
    passages = [Passage(n, f"f{n}.py", 1, 2, "", "a\nb") for n in (1, 2, 3)]

    async def run(take: int | None):
        stream, events = generator.generate("q", passages), []
        async for event in stream:
            events.append(event)
            if take is not None and len(events) == take:
                break
        await stream.aclose()  # what Serve does when the caller cancels
        return events

    events = asyncio.run(run(None))
    assert [e.kind for e in events] == ["usage"] + ["token"] * 3
    assert events[0].data == {"tokens_in": 0, "model_params": {"passages": 3, "lines": 12}}
    asyncio.run(run(2))
    assert generator.info()["streams"] == {"active": 0, "completed": 1, "stopped": 1}


def test_a_pinned_version_keeps_serving_while_reindexes_publish(tmp_path, real_embedder):
    repo, index = write_tree(tmp_path / "repo", SMALL_REPO), tmp_path / "idx"
    indexer = Indexer(embedder=real_embedder)
    layout = IndexLayout(index)

    def publish(n: int) -> str:
        (repo / f"app/added_{n}.py").write_text(f"def added_{n}():\n    return {n}\n")
        indexer.run(repo, index)
        return layout.current_name()

    indexer.run(repo, index)
    hydrator = Hydrator.func_or_class(str(index))
    v1 = hydrator.info()["version"]
    chunks_v1 = len(hydrator.ids_in_scope(Scope(), v1))
    v2 = publish(2)
    assert hydrator.info()["version"] == v2 and hydrator.versions() == [v1, v2]
    assert len(hydrator.ids_in_scope(Scope(), v1)) == chunks_v1 < len(hydrator.ids_in_scope(Scope(), v2))
    v3 = publish(3)  # pruning would drop v1, but this replica still holds it open (leased)
    assert (index / "versions" / v1).is_dir() and len(hydrator.ids_in_scope(Scope(), v1)) == chunks_v1
    hydrator.info()  # opens v3: v1 is closed and its lease released
    assert v1 not in hydrator.versions()
    publish(4)
    assert not (index / "versions" / v1).exists() and (index / "versions" / v3).is_dir()
    with pytest.raises(VersionGoneError):
        hydrator.ids_in_scope(Scope(), v1)
