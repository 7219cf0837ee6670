"""Where an index build's heavy work runs: parsing files and embedding chunks.

The :class:`Indexer` keeps every rule (what changed, what the cache already has, how a version is
written); an executor only maps pure functions over files and texts. :class:`LocalExecutor` runs them
in this process; ``codeintel.indexing.distributed.RayExecutor`` runs the same functions as Ray Data
tasks and an embedder actor pool, so both build the same index.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence

import msgspec
import numpy as np

from codeintel.config import ChunkSettings
from codeintel.embedding import Embedder
from codeintel.indexing.chunking import Chunk, chunk_file
from codeintel.indexing.graph import Definition, Reference, extract_graph
from codeintel.indexing.walk import SourceFile

__all__ = ["Parsed", "parse_file", "Executor", "LocalExecutor", "ProgressFn"]

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


class Parsed(msgspec.Struct, frozen=True, array_like=True):
    """One file's chunks and code-graph rows (msgpack-able: it crosses process boundaries)."""

    chunks: list[Chunk]
    defs: list[Definition]
    refs: list[Reference]


def parse_file(repo: str, uri: str, text: str, lang: str, settings: ChunkSettings, graph: bool = True) -> Parsed:
    defs, refs = extract_graph(uri, text, lang) if graph else ([], [])
    return Parsed(chunk_file(repo, uri, text, lang, settings), list(defs), list(refs))


class Executor(Protocol):
    def parse(self, repo: str, files: Sequence[SourceFile], settings: ChunkSettings, progress: ProgressFn,
              graph: bool = True) -> list[Parsed]:
        """Every file parsed, in the order given."""
        ...

    def embed(self, texts: Sequence[str], batch: int) -> Iterator[np.ndarray]:
        """Document vectors of consecutive slices of ``texts``, in order (the caller caches each)."""
        ...


class LocalExecutor:
    """This process, one file and one batch at a time; the embedder loads on first use."""

    def __init__(self, embedder: Callable[[], Embedder]) -> None:
        self._embedder = embedder

    def parse(self, repo: str, files: Sequence[SourceFile], settings: ChunkSettings, progress: ProgressFn,
              graph: bool = True) -> list[Parsed]:
        out = []
        for i, f in enumerate(files, 1):
            out.append(parse_file(repo, f.uri, f.text, f.lang, settings, graph))
            progress("chunk", i, len(files))
        return out

    def embed(self, texts: Sequence[str], batch: int) -> Iterator[np.ndarray]:
        for start in range(0, len(texts), batch):
            yield self._embedder().embed(list(texts[start : start + batch]))
