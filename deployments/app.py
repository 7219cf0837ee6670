"""Graph builder: ``serve run deployments.app:build_app index_dir=...`` or via serve_config.yaml."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import msgspec
from ray.serve import Application, Deployment

from codeintel.config import GeneratorName, Settings, load_settings
from codeintel.errors import InputError, ModelUnavailableError
from deployments.components import EmbedderDeployment, FaissShard, Generator, Hydrator, IndexWriter, LexicalRetriever, RerankerDeployment, ScopeStore
from deployments.ingress import Ingress, IngressConfig

__all__ = ["AppArgs", "Backends", "bind_backends", "bind_ingress", "build_app", "build_graph", "deployment_names"]


class AppArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The shape of the graph; how it behaves is ``settings`` (a TOML file at ``config``, or inline)."""

    index_dir: str
    num_shards: int = 1
    ingress_replicas: int = 1
    use_gpu: bool = False  # FAISS shards clone to GPU (and readiness expects them there)
    # custom Ray resources each FAISS shard replica needs: pins shards to the nodes that offer them
    # (`ray start --resources '{"shard_node": 2}'`); such nodes read versions only from the store
    shard_resources: dict[str, float] = {}
    scope_backend: str = "memory"  # or redis://host:6379/0 (needs the redis extra)
    traces_dir: str | None = None  # where answer traces go (Parquet); None: next to the index
    # "extractive" (no model), "llm" (the bundled model in llama.cpp), "vllm" (an LLM deployment of
    # ray.serve.llm as settings.vllm describes it); a model that cannot load falls back one step
    generator: GeneratorName = "extractive"
    config: str | None = None  # a settings TOML file, read where the graph is built
    settings: Settings | None = None  # inline settings (serve_config.yaml), instead of config

    def resolved_settings(self) -> Settings:
        if self.config and self.settings is not None:
            raise InputError("give settings either as a config file or inline, not both")
        return self.settings if self.settings is not None else load_settings(self.config)


@dataclass(frozen=True)
class Backends:
    """Every deployment the ingress calls, bound; a test graph replaces some with its own."""

    embedder: Application
    shards: list[Application]
    lexical: Application
    hydrator: Application
    reranker: Application
    scopes: Application
    generator: Application
    writer: Application


def _shard(cfg: AppArgs, i: int) -> Deployment:
    options = {**FaissShard.ray_actor_options, "num_gpus": 0.5 if cfg.use_gpu else 0, "resources": dict(cfg.shard_resources)}
    return FaissShard.options(name=f"FaissShard{i}", ray_actor_options=options)


def deployment_names(cfg: AppArgs) -> set[str]:
    """The deployments of the graph ``cfg`` describes: the names a serve config may configure."""
    singles = (Ingress, EmbedderDeployment, LexicalRetriever, Hydrator, RerankerDeployment, ScopeStore, Generator, IndexWriter)
    llm = {"LLM"} if cfg.generator == "vllm" else set()  # deployments.llm.LLM_DEPLOYMENT (importing it imports vLLM)
    return {d.name for d in singles} | {_shard(cfg, i).name for i in range(cfg.num_shards)} | llm


def _generator(cfg: AppArgs, settings: Settings) -> Application:
    """The Generator, with the LLM deployment bound under it for vllm; without the vllm extra (or
    its model) the graph answers with llama.cpp and readiness says why."""
    if cfg.generator != "vllm":
        return Generator.bind(cfg.generator, settings=settings)
    try:
        from codeintel.answer.vllm_engine import resolve_model

        model = resolve_model(settings.vllm)
        from deployments.llm import llm_app
    except (ModelUnavailableError, ImportError) as exc:
        return Generator.bind("llm", settings=settings, fallback=f"vLLM unavailable: {exc}")
    return Generator.bind("vllm", llm_app(settings.vllm, model), settings, model)


def bind_backends(cfg: AppArgs, settings: Settings) -> Backends:
    index = cfg.index_dir
    return Backends(
        embedder=EmbedderDeployment.bind(settings),
        shards=[_shard(cfg, i).bind(index, i, cfg.num_shards, cfg.use_gpu or None, settings) for i in range(cfg.num_shards)],
        lexical=LexicalRetriever.bind(index, settings),
        hydrator=Hydrator.bind(index, settings),
        reranker=RerankerDeployment.bind(settings),
        scopes=ScopeStore.bind(cfg.scope_backend, settings),
        generator=_generator(cfg, settings),
        writer=IndexWriter.bind(index, settings),
    )


def bind_ingress(cfg: AppArgs, settings: Settings, backends: Backends) -> Application:
    index = Path(cfg.index_dir)
    traces = cfg.traces_dir or str(index.resolve().parent / (index.name + "-traces"))
    config = IngressConfig(index_dir=cfg.index_dir, traces_dir=traces, expect_gpu=cfg.use_gpu)
    parts = {f.name: getattr(backends, f.name) for f in fields(backends)}
    return Ingress.options(num_replicas=cfg.ingress_replicas).bind(**parts, config=config, settings=settings)


def build_graph(cfg: AppArgs) -> Application:
    settings = cfg.resolved_settings()
    return bind_ingress(cfg, settings, bind_backends(cfg, settings))


def build_app(args: dict) -> Application:
    """Entry point for ``serve run``/``serve deploy`` (``args`` from the CLI or serve_config.yaml)."""
    return build_graph(msgspec.convert(dict(args), AppArgs, strict=False))
