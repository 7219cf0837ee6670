"""An index build's parsing and embedding on a Ray cluster (``codeintel index PATH --ray [ADDRESS]``).

The driver walks the repository and reads the files (it holds the checkout: nodes share nothing but
the artifact store), then ships their text through Ray's object store: parsing runs as Ray Data
tasks, embedding on an actor pool of embedders (``map_batches``; a GPU per actor when the engine
runs on one). Everything else (change detection, the embedding cache, the version's Parquet, DuckDB,
FAISS and Lucene files) stays in :class:`~codeintel.indexing.pipeline.Indexer`, so a distributed
build equals a local one.
"""

from __future__ import annotations

import logging
import math
from typing import Iterator, Sequence

import msgspec
import numpy as np

from codeintel.config import ChunkSettings, Settings
from codeintel.errors import InputError
from codeintel.indexing.executor import Parsed, ProgressFn, parse_file
from codeintel.indexing.walk import SourceFile

__all__ = ["RayExecutor"]


def _parse_batch(batch: dict, repo: str, settings: dict, graph: bool) -> dict:
    chunk = msgspec.convert(settings, ChunkSettings)
    encode = msgspec.msgpack.Encoder().encode
    parsed = [encode(parse_file(repo, u, t, lang, chunk, graph)) for u, t, lang in zip(batch["uri"], batch["text"], batch["lang"])]
    return {"i": batch["i"], "parsed": np.array(parsed, dtype=object)}


class _EmbedActor:
    """One embedder per actor, loaded once; Ray Data feeds it batches of chunk texts."""

    def __init__(self, settings: dict, threads: int) -> None:
        from codeintel.embedding import create_embedder

        s = msgspec.convert(settings, Settings)
        self.embedder = create_embedder(s.embedding, batch_size=s.embed_batch_size, engine=s.engines, threads=threads)

    def __call__(self, batch: dict) -> dict:
        return {"i": batch["i"], "vector": self.embedder.embed(list(batch["text"]))}


class RayExecutor:
    """Parse and embed on the Ray cluster at ``address`` (None: this node's, started if need be).

    ``workers`` is the embedder actor pool's size (default: one per GPU when embeddings run on GPU,
    else one per node); each CPU actor gets an equal share of the cluster's CPUs as its threads."""

    def __init__(self, settings: Settings, address: str | None = None, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise InputError("--workers must be at least 1")
        import ray
        import ray.data

        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError) as exc:
                raise InputError(f"cannot reach a Ray cluster at {address!r}: {exc}") from None
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # vectors come back in the order of their texts
        ctx.enable_progress_bars = False  # the CLI draws its own
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        self.settings, self.ray = settings, ray
        resources = ray.cluster_resources()
        self.gpu = settings.engines.embedder == "vllm" and settings.engines.vllm_device == "gpu"
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        self.workers = workers or (max(1, int(resources.get("GPU", 0))) if self.gpu else max(1, nodes))
        self.threads = max(1, int(resources.get("CPU", 1)) // self.workers)

    def parse(self, repo: str, files: Sequence[SourceFile], settings: ChunkSettings, progress: ProgressFn,
              graph: bool = True) -> list[Parsed]:
        if not files:
            return []
        rows = [{"i": i, "uri": f.uri, "text": f.text, "lang": f.lang} for i, f in enumerate(files)]
        ds = self.ray.data.from_items(rows, override_num_blocks=min(len(rows), self.workers * 8))
        ds = ds.map_batches(_parse_batch, fn_kwargs={"repo": repo, "settings": msgspec.to_builtins(settings), "graph": graph},
                            batch_format="numpy", batch_size=64)
        out: list[Parsed | None] = [None] * len(files)
        decode = msgspec.msgpack.Decoder(Parsed).decode
        done = 0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i, raw in zip(batch["i"], batch["parsed"]):
                out[int(i)] = decode(raw)
            done += len(batch["i"])
            progress("chunk", done, len(files))
        missing = [files[i].uri for i, p in enumerate(out) if p is None]
        if missing:
            raise RuntimeError(f"Ray Data returned no parse for {len(missing)} files (first: {missing[0]})")
        return out  # type: ignore[return-value]

    def embed(self, texts: Sequence[str], batch: int) -> Iterator[np.ndarray]:
        if not texts:
            return
        rows = [{"i": i, "text": t} for i, t in enumerate(texts)]
        ds = self.ray.data.from_items(rows, override_num_blocks=max(self.workers, math.ceil(len(rows) / batch)))
        ds = ds.map_batches(_EmbedActor, fn_constructor_kwargs={"settings": msgspec.to_builtins(self.settings), "threads": self.threads},
                            batch_size=batch, batch_format="numpy", concurrency=self.workers,
                            num_cpus=0 if self.gpu else self.threads, num_gpus=1 if self.gpu else 0)
        expected = 0
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            order = out["i"]
            if len(order) and (order[0] != expected or np.any(np.diff(order) != 1)):
                raise RuntimeError(f"embeddings came back out of order at text {expected}")
            expected += len(order)
            yield np.asarray(out["vector"], dtype=np.float32)
