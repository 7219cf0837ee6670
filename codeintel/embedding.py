"""Dense embedders. The CPU default runs a model shipped inside a PyPI wheel, fully offline."""

from __future__ import annotations

import os
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from codeintel.config import BGE_SMALL, EmbeddingContract, EnginesSettings
from codeintel.errors import ContractMismatchError, ModelUnavailableError
from codeintel.models import BundledOnnxModel

__all__ = ["Embedder", "OnnxEmbedder", "VLLMEmbedder", "create_embedder", "load_vllm_pooling"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of ``contract.dim`` dimensions.

    Documents and queries may be embedded differently (bge prefixes queries with an instruction),
    so callers say which they have.
    """

    contract: EmbeddingContract

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray: ...


class _ContractEncoder:
    """Documents as they are, queries behind the contract's prefix: one rule for every engine."""

    contract: EmbeddingContract

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode([self.contract.query_prefix + q for q in queries])


class OnnxEmbedder(_ContractEncoder, BundledOnnxModel):
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



def load_vllm_pooling(model: str, *, max_model_len: int, device: Literal["cpu", "gpu"] = "cpu",
                      gpu_memory_utilization: float = 0.3, pooler: dict[str, Any] | None = None, **engine_kwargs: Any):
    """A vLLM engine in pooling mode (``runner="pooling"``: no sampler, no decode loop) for ``model``;
    ``pooler`` holds ``vllm.config.PoolerConfig``'s fields.

    vLLM is imported here, never at module import: it is an extra, and importing it costs seconds.
    """
    try:
        from vllm import LLM
        from vllm.config import PoolerConfig
    except ImportError as exc:
        raise ModelUnavailableError(f"the vllm engine needs the vllm extra (make install-vllm): {exc}") from None
    kwargs: dict[str, Any] = {"runner": "pooling", "max_model_len": max_model_len}
    if pooler:
        kwargs["pooler_config"] = PoolerConfig(**pooler)
    if device == "cpu":
        # vLLM pins its OpenMP threads to cores unless told not to; other replicas share them.
        # No CUDA graphs or torch.compile (minutes on a few cores); pooling keeps no KV cache
        # between requests, so a quarter GiB holds any batch.
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        kwargs |= {"enforce_eager": True, "dtype": "bfloat16", "kv_cache_memory_bytes": 256 << 20}
    else:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    try:
        return LLM(model=model, **(kwargs | engine_kwargs))
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelUnavailableError(f"vLLM could not load {model}: {exc}") from exc


class VLLMEmbedder(_ContractEncoder):
    """``contract.weights`` (a Hugging Face id or folder) served by vLLM's embedding runner.

    Pooling, normalization and truncation follow the contract, so vectors match what an index built
    under the same contract holds; the model's width is checked against ``contract.dim`` on load.
    """

    def __init__(self, contract: EmbeddingContract, *, device: Literal["cpu", "gpu"] = "cpu",
                 gpu_memory_utilization: float = 0.3, **engine_kwargs: Any) -> None:
        self.contract = contract
        pooler = {"pooling_type": contract.pooling.upper(), "use_activation": contract.normalized}
        self.llm = load_vllm_pooling(contract.weights, max_model_len=contract.max_tokens, device=device,
                                     gpu_memory_utilization=gpu_memory_utilization, convert="embed",
                                     pooler_config=pooler, **engine_kwargs)
        # the head of a chunk (signature, docstring) is what it is about: cut the tail
        self._tokenization = {"truncate_prompt_tokens": contract.max_tokens, "truncation_side": "right"}
        dim = self._encode(["dimension probe"]).shape[1]
        if dim != contract.dim:
            self.close()
            raise ContractMismatchError("dim", contract.dim, dim)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.contract.dim), dtype=np.float32)
        outputs = self.llm.embed(list(texts), use_tqdm=False, tokenization_kwargs=dict(self._tokenization))
        vectors = np.asarray([o.outputs.embedding for o in outputs], dtype=np.float32)
        if self.contract.normalized:  # vLLM normalized already; this only removes bfloat16 drift
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


    def close(self) -> None:
        """Stop vLLM's engine process now rather than at garbage collection."""
        self.llm.llm_engine.engine_core.shutdown()


def create_embedder(contract: EmbeddingContract, *, batch_size: int = 16,
                    engine: Literal["onnx", "vllm"] | EnginesSettings = "onnx", threads: int | None = None) -> Embedder:
    """The configured embedder for a contract. ``engine`` is a name, or ``Settings.engines`` to also
    carry vLLM's device and memory share; vLLM batches by itself, so ``batch_size`` is ONNX's."""
    engines = engine if isinstance(engine, EnginesSettings) else EnginesSettings(embedder=engine)
    if engines.embedder == "vllm":
        return VLLMEmbedder(contract, device=engines.vllm_device, gpu_memory_utilization=engines.gpu_memory_utilization)
    return OnnxEmbedder(contract, batch_size=batch_size, threads=threads)
