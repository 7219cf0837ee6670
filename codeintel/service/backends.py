"""The read side of a published index, one class per serving role: a dense shard, BM25, the catalog.

Each holds its index versions in a :class:`VersionPool` and answers calls pinned to a version; the
Serve deployments are these classes with Serve's hooks, and tests use them without Ray. ``check``
is a real read of the current version: what Serve's health check runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import msgspec
import numpy as np

from codeintel.config import Settings
from codeintel.errors import NotIndexedError
from codeintel.retrieval.query import PreparedQuery
from codeintel.retrieval.retrievers import lexical_hits
from codeintel.service.coalesce import Batchable, Call
from codeintel.service.versions import VersionPool
from codeintel.storage.catalog import Catalog, ChunkRow
from codeintel.storage.chunks import embeddings_of, read_chunk_table
from codeintel.storage.dense import DenseIndex, set_search_threads
from codeintel.storage.graph import CodeGraph
from codeintel.storage.layout import IndexManifest, VersionPaths
from codeintel.storage.lexical import LexicalIndex
from codeintel.storage.scope import Scope
from codeintel.storage.source import FileLines, check_uri, read_lines

__all__ = ["ShardBackend", "LexicalBackend", "HydratorBackend"]

Hits = list[tuple[int, float]]


class ShardBackend(Batchable):
    """Shard ``shard`` of ``num_shards``: the vectors whose chunk id % num_shards == shard."""

    BATCHED = frozenset({"search"})

    def __init__(self, index_dir: str, shard: int = 0, num_shards: int = 1, use_gpu: bool | None = None,
                 settings: Settings = Settings()) -> None:
        set_search_threads(1)  # one OpenMP thread per replica: concurrency comes from replicas
        self.shard, self.num_shards, self.use_gpu, self.settings = shard, num_shards, use_gpu, settings
        self.pool: VersionPool[DenseIndex] = VersionPool(index_dir, self._open, store=settings.store)

    def _open(self, paths: VersionPaths, manifest: IndexManifest) -> DenseIndex:
        if self.num_shards == 1:
            return DenseIndex.load(paths.dense, use_gpu=self.use_gpu)
        table = read_chunk_table(paths.chunks, columns=["id", "embedding"])
        ids = table.column("id").to_numpy()
        mine = ids % self.num_shards == self.shard
        index = DenseIndex.build(embeddings_of(table, manifest.contract.dim)[mine], ids[mine], manifest.contract, self.settings.dense)
        index.place(self.use_gpu)
        return index

    def search(self, vector: np.ndarray, k: int, allowed: list[int] | None = None, version: str | None = None) -> Hits:
        selector = None if allowed is None else np.asarray(allowed, dtype=np.int64)
        with self.pool.use(version) as index:
            return index.search(vector, k, allowed=selector)[0]

    def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """The unscoped searches among ``calls`` go through FAISS in one pass per version: a flat
        scan is bound by memory bandwidth, so four queries in one pass cost about what one costs."""
        groups: dict[str | None, list[int]] = {}
        for i, (name, args) in enumerate(calls):
            if name == "search" and len(args) == 4 and args[2] is None:
                groups.setdefault(args[3], []).append(i)
        together = {i for rows in groups.values() for i in rows}
        out: list[Any] = [None] * len(calls)
        alone = [i for i in range(len(calls)) if i not in together]
        for i, result in zip(alone, super().call_many([calls[i] for i in alone]), strict=True):
            out[i] = result
        for version, rows in groups.items():
            try:
                k = max(calls[i][1][1] for i in rows)
                with self.pool.use(version) as index:
                    found = index.search(np.concatenate([calls[i][1][0] for i in rows]), k)
                for i, hits in zip(rows, found, strict=True):
                    out[i] = hits[: calls[i][1][1]]
            except Exception as exc:
                for i in rows:
                    out[i] = exc
        return out

    def info(self) -> dict:
        with self.pool.use(None) as index:
            m = index.manifest
            return {"shard": self.shard, "num_shards": self.num_shards, "dim": m.vec_dim, "vectors": index.ntotal,
                    "index_type": m.index_type, "gpu": m.gpu, "gpu_reason": m.gpu_reason, "versions_open": self.pool.versions()}

    def check(self) -> None:
        """A search for a unit vector must come back with one valid hit (or none from an empty shard)."""
        with self.pool.use(None) as index:
            probe = np.zeros((1, index.manifest.vec_dim), dtype=np.float32)
            probe[0, 0] = 1.0
            hits = index.search(probe, 1)[0]
            if len(hits) != min(1, index.ntotal) or any(i < 0 or not np.isfinite(s) for i, s in hits):
                raise RuntimeError(f"FAISS shard {self.shard} answered a probe search with {hits!r}")


@dataclass
class _Lexical:
    index: LexicalIndex
    docs: int


class LexicalBackend(Batchable):
    """BM25 over Lucene; one JVM per process, started with the configured heap."""

    BATCHED = frozenset({"retrieve"})

    def __init__(self, index_dir: str, settings: Settings = Settings()) -> None:
        self.settings = settings
        self.pool: VersionPool[_Lexical] = VersionPool(index_dir, self._open, lambda state: state.index.close(), store=settings.store)

    def _open(self, paths: VersionPaths, manifest: IndexManifest) -> _Lexical:
        index = LexicalIndex(paths.lexical, self.settings.lexical)
        return _Lexical(index, index.count())

    def retrieve(self, query: PreparedQuery, k: int, allowed: frozenset[int] | None = None, version: str | None = None) -> Hits:
        with self.pool.use(version) as lexical:
            return lexical_hits(lexical.index, query, k, allowed)

    def info(self) -> dict:
        with self.pool.use(None) as lexical:
            return {"docs": lexical.docs, "versions_open": self.pool.versions()}

    def check(self) -> None:
        with self.pool.use(None) as lexical:
            lexical.index.search("health", 1)


@dataclass
class _Catalog:
    paths: VersionPaths
    manifest: IndexManifest
    catalog: Catalog
    parquet_dim: int


class HydratorBackend(Batchable):
    """The DuckDB catalog: hydrate ids with the scope in SQL; scope ids, path mentions, files, status."""

    BATCHED = frozenset({"query_by_ids", "ids_in_scope", "ids_for_paths", "symbol_ids", "callee_ids"})

    def __init__(self, index_dir: str, settings: Settings = Settings()) -> None:
        self.pool: VersionPool[_Catalog] = VersionPool(index_dir, self._open, lambda state: state.catalog.close(), store=settings.store)

    @staticmethod
    def _open(paths: VersionPaths, manifest: IndexManifest) -> _Catalog:
        dim = int(read_chunk_table(paths.chunks, columns=["embedding"]).schema.field("embedding").type.list_size)
        return _Catalog(paths, manifest, Catalog(paths.catalog), dim)

    def query_by_ids(self, ids: list[int], scope: Scope, version: str | None = None) -> list[ChunkRow]:
        with self.pool.use(version) as v:
            return v.catalog.query_by_ids(ids, scope)

    def ids_in_scope(self, scope: Scope, version: str | None = None) -> list[int]:
        with self.pool.use(version) as v:
            return v.catalog.ids_in_scope(scope)

    def ids_for_paths(self, paths: tuple[str, ...], limit: int, version: str | None = None) -> list[int]:
        with self.pool.use(version) as v:
            return v.catalog.ids_for_paths(paths, limit)

    def symbol_ids(self, names: tuple[str, ...], version: str | None = None) -> list[int]:
        with self.pool.use(version) as v:
            return CodeGraph(v.catalog.query).definition_chunks(names)

    def callee_ids(self, ids: list[int], limit: int, version: str | None = None) -> list[int]:
        with self.pool.use(version) as v:
            return CodeGraph(v.catalog.query).callee_chunks(ids, limit)

    @staticmethod
    def _indexed(v: _Catalog, uri: str) -> str:
        uri = check_uri(uri)
        if not v.catalog.has_file(uri):
            raise NotIndexedError(f"{uri!r} is not a file of the index of {v.manifest.repo.name} (paths are repo-relative, as search hits report them)")
        return uri

    def file_chunks(self, uri: str, start_line: int | None, end_line: int | None, limit: int) -> tuple[list[ChunkRow], bool]:
        """The indexed chunks of one file overlapping a line range, and whether ``limit`` cut them."""
        with self.pool.use(None) as v:
            rows = v.catalog.file_chunks(self._indexed(v, uri), start_line, end_line, limit + 1)
        return rows[:limit], len(rows) > limit

    # -- the code graph: definitions, references, outlines ------------------------------------
    def definitions(self, symbol: str, scope: Scope, limit: int) -> list[dict]:
        with self.pool.use(None) as v:
            return [msgspec.structs.asdict(s) for s in CodeGraph(v.catalog.query).definitions(symbol, scope, limit)]

    def references(self, symbol: str, scope: Scope, limit: int) -> list[dict]:
        with self.pool.use(None) as v:
            return [msgspec.structs.asdict(u) for u in CodeGraph(v.catalog.query).references(symbol, scope, limit)]

    def outline(self, uri: str) -> list[dict]:
        with self.pool.use(None) as v:
            return [msgspec.structs.asdict(s) for s in CodeGraph(v.catalog.query).outline(self._indexed(v, uri))]

    def file_lines(self, uri: str, start_line: int, end_line: int | None, max_lines: int) -> FileLines:
        """Lines of the live file under the indexed repository root; only files of the index are served."""
        with self.pool.use(None) as v:
            return read_lines(v.manifest.repo.root, self._indexed(v, uri), start_line, end_line, max_lines)

    def info(self) -> dict:
        with self.pool.use(None) as v:
            m = v.manifest
            return {
                "version": v.paths.name, "repo": m.repo.name, "commit": m.repo.commit, "root": m.repo.root,
                "files": m.files, "chunks": v.catalog.count(), "built_at": m.built_at, "parquet_dim": v.parquet_dim,
                "contract": {"model_id": m.contract.model_id, "dim": m.contract.dim, "dtype": m.contract.dtype,
                             "normalized": m.contract.normalized, "metric": m.contract.metric},
                "dense_type": m.dense_type, "lexical_docs": m.lexical_docs, "path": str(Path(v.paths.root)),
                "versions_open": self.pool.versions(),
            }

    def check(self) -> None:
        with self.pool.use(None) as v:
            v.catalog.count()
