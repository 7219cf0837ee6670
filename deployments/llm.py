"""vLLM in the graph: Ray's ``LLMServer`` (ray.serve.llm) as the deployment named ``LLM``.

Imported only when the graph has the vllm generator: ``ray.serve.llm`` imports vLLM.
"""

from __future__ import annotations

from ray.serve import Application
from ray.serve.llm import LLMServer, build_llm_deployment

from codeintel.answer.vllm_engine import VLLMEngine, llm_config, resolve_model
from codeintel.config import VLLMSettings

__all__ = ["LLM_DEPLOYMENT", "CodeintelLLMServer", "llm_app", "start_llm"]

LLM_DEPLOYMENT = "LLM"  # the name serve configs use, whatever model it serves


class CodeintelLLMServer(LLMServer):
    async def unfinished(self) -> int:
        """Requests vLLM still holds (running or waiting): what a client's disconnect must bring down.
        vLLM exposes it on its engine client only; Ray keeps that client private."""
        return self.engine._engine_client.output_processor.get_num_unfinished_requests()


def llm_app(settings: VLLMSettings, model: str) -> Application:
    return build_llm_deployment(llm_config(settings, model), deployment_cls=CodeintelLLMServer,
                                override_serve_options={"name": LLM_DEPLOYMENT})


def start_llm(settings: VLLMSettings, name: str = "llm") -> VLLMEngine:
    """The LLM deployment alone, on this process's Ray (a local one if none is up), and the answer
    engine over its handle: what benchmarks and evals drive. ``serve.shutdown()`` ends it."""
    import os

    import ray
    from ray import serve

    from codeintel.answer.vllm_engine import ServeChat

    model = resolve_model(settings)
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    handle = serve.run(llm_app(settings, model), name=name, route_prefix=None)
    return VLLMEngine(ServeChat(handle), settings, model)
