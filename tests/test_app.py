"""The graph builder and the shipped Serve configs agree (names, arguments), checked without starting Ray."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from codeintel.config import Settings
from codeintel.errors import InputError
from deployments.app import AppArgs, build_app, deployment_names

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("config", ["serve_config.yaml", "serve_config.gpu.yaml"])
def test_serve_configs_name_only_deployments_of_the_graph(config):
    schema = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / config).read_text()))
    [app] = schema.applications
    args = msgspec.convert(app.args, AppArgs)  # every arg is one the builder knows
    build_app(app.args)
    names = deployment_names(args)
    configured = {d.name for d in app.deployments}
    assert configured <= names, configured - names
    assert {"Ingress", "IndexWriter", "Hydrator", "LexicalRetriever", "Generator", "FaissShard0"} <= names


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
