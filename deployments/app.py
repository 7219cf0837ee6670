"""Graph builder: ``serve run deployments.app:build_app index_dir=...`` or via serve_config.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from ray.serve import Application

from deployments.components import EmbedderDeployment, FaissShard, Generator, Hydrator, IndexWriter, LexicalRetriever, RerankerDeployment, ScopeStore
from deployments.ingress import Ingress, IngressConfig

__all__ = ["AppArgs", "build_app", "build_graph"]


class AppArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    index_dir: str
    num_shards: int = 1
    ingress_replicas: int = 1
    use_gpu: bool = False  # FAISS shards clone to GPU (and readiness expects them there)
    retriever_timeout_s: float = 5.0
    rerank_timeout_s: float = 15.0
    scope_backend: str = "memory"  # or redis://host:6379/0 (needs the redis extra)
    traces_dir: str | None = None  # where answer traces go (Parquet); None: next to the index
    generator: str = "extractive"  # or "llm": the bundled CPU model (falls back to extractive)


def build_graph(cfg: AppArgs, options: dict[str, dict[str, Any]] | None = None) -> Application:
    """The deployment graph; ``options`` overrides ``.options(...)`` per deployment name (tests inject faults)."""
    options = options or {}

    def opt(deployment, key: str, **defaults):
        return deployment.options(**{**defaults, **options.get(key, {})})

    shards = [
        opt(FaissShard, f"FaissShard{i}", name=f"FaissShard{i}", ray_actor_options={"num_cpus": 0.25, "num_gpus": 0.5 if cfg.use_gpu else 0}).bind(
            cfg.index_dir, i, cfg.num_shards, cfg.use_gpu or None
        )
        for i in range(cfg.num_shards)
    ]
    traces = cfg.traces_dir or str(Path(cfg.index_dir).resolve().parent / (Path(cfg.index_dir).name + "-traces"))
    config = IngressConfig(index_dir=cfg.index_dir, traces_dir=traces, retriever_timeout_s=cfg.retriever_timeout_s, rerank_timeout_s=cfg.rerank_timeout_s, expect_gpu=cfg.use_gpu)
    return opt(Ingress, "Ingress", num_replicas=cfg.ingress_replicas).bind(
        opt(EmbedderDeployment, "Embedder").bind(),
        shards,
        opt(LexicalRetriever, "LexicalRetriever").bind(cfg.index_dir),
        opt(Hydrator, "Hydrator").bind(cfg.index_dir),
        opt(RerankerDeployment, "Reranker").bind(),
        opt(ScopeStore, "ScopeStore").bind(cfg.scope_backend),
        opt(Generator, "Generator").bind(cfg.generator),
        msgspec.to_builtins(config),
        writer=opt(IndexWriter, "IndexWriter").bind(cfg.index_dir),
    )


def build_app(args: dict) -> Application:
    """Entry point for ``serve run``/``serve deploy`` (``args`` from the CLI or serve_config.yaml)."""
    return build_graph(msgspec.convert(dict(args), AppArgs, strict=False))
