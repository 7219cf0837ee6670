"""Failing deployments for test graphs: bound in place of the real ones, never part of production code.

Ray ships these by value (conftest registers this module with cloudpickle), so replicas need not
import the tests directory.
"""

from __future__ import annotations

from ray import serve

from codeintel.service.backends import ShardBackend
from codeintel.service.coalesce import Batchable


@serve.deployment(name="LexicalRetriever", ray_actor_options={"num_cpus": 0.1})
class FailingLexical(Batchable):
    """A BM25 retriever whose every call fails, while its replica stays up (a broken engine, not a dead process)."""

    BATCHED = frozenset({"retrieve"})

    def retrieve(self, *args, **kwargs):
        raise RuntimeError("lexical retriever failing (test fault)")

    def info(self) -> dict:
        raise RuntimeError("lexical retriever failing (test fault)")


@serve.deployment(name="FaissShard0", ray_actor_options={"num_cpus": 0.1})
class WrongDimShard(ShardBackend):
    """A FAISS shard whose index claims another embedding dimension than the embedder's."""

    def info(self) -> dict:
        return {**super().info(), "dim": 768}
