"""The graph builder and the shipped Serve configs agree (names, arguments), checked without starting Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from deployments.app import AppArgs, build_app

ROOT = Path(__file__).resolve().parents[1]


def graph_deployments(app) -> set[str]:
    names, todo = set(), [app]
    while todo:
        deployment = todo.pop()._bound_deployment
        names.add(deployment.name)
        for value in list(deployment.init_args) + list(deployment.init_kwargs.values()):
            todo += [v for v in (value if isinstance(value, list) else [value]) if hasattr(v, "_bound_deployment")]
    return names


@pytest.mark.parametrize("config", ["serve_config.yaml", "serve_config.gpu.yaml"])
def test_serve_configs_name_only_deployments_of_the_graph(config):
    schema = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / config).read_text()))
    [app] = schema.applications
    AppArgs(**app.args)  # every arg is one the builder knows
    names = graph_deployments(build_app(app.args))
    configured = {d.name for d in app.deployments}
    assert configured <= names, configured - names
    assert {"Ingress", "IndexWriter", "Hydrator", "LexicalRetriever", "Generator"} <= names
