"""FAISS dense index: a primary index sized to the corpus plus a flat secondary for appends.

Measured here (faiss-cpu 1.15.1, 2 cores): Flat is exact and fast enough below ~200k vectors;
above, IVFFlat (nlist ~ 4*sqrt(N), nprobe 64-128) builds 1M in 16 s, supports remove_ids and maps
to GpuIndexIVFFlat. HNSW took 10 min for 1M and cannot remove, so it is not offered.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import numpy as np

from codeintel.config import DenseSettings, EmbeddingContract
from codeintel.errors import IndexFormatError

__all__ = ["DenseManifest", "DenseIndex", "build_index", "merge_best", "set_search_threads"]

import faiss  # noqa: E402  (after numpy, as faiss expects)

# faiss 1.15.1 raised this to 128000, which keeps batched Flat search off BLAS; lower it back.
faiss.cvar.distance_compute_blas_threshold = 20

DENSE_FORMAT = 1
_PRIMARY, _SECONDARY, _MANIFEST = "primary.faiss", "secondary.faiss", "manifest.json"


class DenseManifest(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    vec_dim: int
    index_type: str
    params: dict[str, int]
    metric: str
    model_id: str
    contract: EmbeddingContract
    built_at: str
    primary_count: int
    secondary_count: int
    gpu: bool = False
    gpu_reason: str = "built on CPU"


def _ids(ids) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64))


def _vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"vectors of shape {array.shape}, expected (n, {dim})")
    return array


def build_index(vectors: np.ndarray, ids: np.ndarray, contract: EmbeddingContract, settings: DenseSettings):
    """A primary index for these vectors: exact Flat when small, IVFFlat trained on a sample when large."""
    dim = contract.dim
    n = len(ids)
    if n < settings.flat_threshold:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        kind, params = "Flat", {}
    else:
        nlist = max(1, int(4 * math.sqrt(n)))
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = min(n, nlist * 64)
        rng = np.random.default_rng(0)
        train = vectors[np.sort(rng.choice(n, size=sample, replace=False))] if sample < n else vectors
        ivf.train(_vectors(train, dim))
        ivf.nprobe = settings.nprobe
        index = faiss.IndexIDMap2(ivf)
        kind, params = "IVFFlat", {"nlist": nlist, "nprobe": settings.nprobe, "train_size": sample}
    if n:
        index.add_with_ids(_vectors(vectors, dim), _ids(ids))
    return index, kind, params


def _empty_flat(dim: int):
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _gpu_available() -> tuple[bool, str]:
    if not hasattr(faiss, "StandardGpuResources"):
        return False, "faiss build has no GPU support (faiss-cpu)"
    try:
        count = faiss.get_num_gpus()
    except Exception as exc:  # pragma: no cover - only on GPU builds
        return False, f"GPU probe failed: {exc}"
    return (count > 0), (f"{count} GPU(s) visible" if count else "no GPU visible")


class DenseIndex:
    """Primary + secondary FAISS indexes of one version, searched together."""

    def __init__(self, primary, secondary, manifest: DenseManifest) -> None:
        self.primary = primary
        self.secondary = secondary
        self.manifest = manifest
        self._gpu_resources = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, ids, contract: EmbeddingContract, settings: DenseSettings) -> "DenseIndex":
        primary, kind, params = build_index(vectors, _ids(ids), contract, settings)
        return cls(primary, _empty_flat(contract.dim), _manifest(contract, kind, params, primary.ntotal, 0))

    def updated(self, remove_ids, add_vectors: np.ndarray, add_ids, settings: DenseSettings) -> "DenseIndex":
        """This index minus remove_ids plus new vectors in the secondary (mutates in place)."""
        contract = self.manifest.contract
        remove = _ids(remove_ids)
        if len(remove):
            selector = faiss.IDSelectorBatch(remove)
            self.primary.remove_ids(selector)
            self.secondary.remove_ids(selector)
        if len(add_ids):
            self.secondary.add_with_ids(_vectors(add_vectors, contract.dim), _ids(add_ids))
        self.manifest.primary_count = int(self.primary.ntotal)
        self.manifest.secondary_count = int(self.secondary.ntotal)
        self.manifest.built_at = _now()
        return self

    def needs_compaction(self, settings: DenseSettings) -> bool:
        n2 = self.secondary.ntotal
        return n2 >= settings.compact_min and n2 > settings.compact_ratio * max(1, self.primary.ntotal)

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.primary, str(directory / _PRIMARY))
        faiss.write_index(self.secondary, str(directory / _SECONDARY))
        (directory / _MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(self.manifest)))

    @classmethod
    def load(cls, directory: Path, *, use_gpu: bool | None = None) -> "DenseIndex":
        try:
            manifest = msgspec.json.decode((directory / _MANIFEST).read_bytes(), type=DenseManifest)
        except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise IndexFormatError(f"dense index manifest unreadable in {directory}: {exc}") from None
        if manifest.version != DENSE_FORMAT:
            raise IndexFormatError(f"dense index format {manifest.version}, this codeintel reads {DENSE_FORMAT}")
        primary = faiss.read_index(str(directory / _PRIMARY))
        secondary = faiss.read_index(str(directory / _SECONDARY))
        if primary.d != manifest.vec_dim or secondary.d != manifest.vec_dim:
            raise IndexFormatError(f"FAISS dim {primary.d} != manifest vec_dim {manifest.vec_dim} in {directory}")
        index = cls(primary, secondary, manifest)
        index.place(use_gpu)
        return index

    def place(self, use_gpu: bool | None) -> None:
        """Clone the primary to GPU 0 when asked (True) or when one is visible (None); record why not."""
        available, reason = _gpu_available()
        if use_gpu is False:
            self.manifest.gpu, self.manifest.gpu_reason = False, "GPU disabled by configuration"
            return
        if not available:
            self.manifest.gpu, self.manifest.gpu_reason = False, reason
            return
        self._gpu_resources = faiss.StandardGpuResources()  # one per process/replica
        self.primary = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self.primary)
        self.manifest.gpu, self.manifest.gpu_reason = True, reason

    # -- search ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.manifest.vec_dim

    @property
    def ntotal(self) -> int:
        return int(self.primary.ntotal + self.secondary.ntotal)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        """Top-k (id, score) per query over both indexes, de-duplicated by id, best first.

        ``allowed`` restricts the search to those ids inside FAISS (a scope filter before ranking).
        """
        q = _vectors(queries, self.dim)
        params = None
        if allowed is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(_ids(allowed)))
            if self.manifest.index_type == "IVFFlat":
                params = faiss.SearchParametersIVF(sel=params.sel, nprobe=int(self.manifest.params.get("nprobe", 64)))
        per_index = []
        for index in (self.primary, self.secondary):
            if index.ntotal:
                scores, ids = index.search(q, min(k, index.ntotal), params=params)
                per_index.append([list(zip(irow.tolist(), srow.tolist(), strict=True)) for srow, irow in zip(scores, ids, strict=True)])
        return [merge_best([lists[row] for lists in per_index], k) for row in range(len(q))]


def merge_best(hit_lists, k: int) -> list[tuple[int, float]]:
    """Merge ranked (id, score) lists (primary + secondary, or shards): each id at its best score, top k."""
    best: dict[int, float] = {}
    for hits in hit_lists:
        for id_, score in hits:
            if id_ >= 0 and score > best.get(id_, -math.inf):
                best[id_] = score
    return sorted(best.items(), key=lambda kv: -kv[1])[:k]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _manifest(contract: EmbeddingContract, kind: str, params: dict, n1: int, n2: int) -> DenseManifest:
    return DenseManifest(
        version=DENSE_FORMAT,
        vec_dim=contract.dim,
        index_type=kind,
        params=params,
        metric=contract.metric,
        model_id=contract.model_id,
        contract=contract,
        built_at=_now(),
        primary_count=n1,
        secondary_count=n2,
    )


def set_search_threads(n: int = 1) -> None:
    """One OpenMP thread per search process: replicas scale out, not up."""
    faiss.omp_set_num_threads(max(1, n))


if os.environ.get("CODEINTEL_FAISS_THREADS"):
    set_search_threads(int(os.environ["CODEINTEL_FAISS_THREADS"]))
