"""The vLLM engine's contract without a running engine: its Ray config, its requests, its stream parsing.

The engine itself runs in tests/test_vllm.py (vLLM's CPU build in a real Serve graph)."""

from __future__ import annotations

import re

import pytest

from codeintel.answer.citations import cited_sentences_regex
from codeintel.answer.vllm_engine import chat_deltas, llm_config
from codeintel.config import VLLMSettings

pytest.importorskip("vllm")


def test_cpu_config_is_one_cpu_bundle_with_vllms_cpu_knobs():
    config = llm_config(VLLMSettings(kv_cache_gib=2, cpus_per_replica=2), model="/models/qwen")
    assert config.accelerator_config.kind == "cpu"
    assert config.placement_group_config["bundles"] == [{"CPU": 2}]
    assert config.engine_kwargs["enforce_eager"] and config.model_loading_config.model_id == "codeintel-llm"
    assert config.runtime_env["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert config.model_loading_config.model_source == "/models/qwen"


def test_gpu_config_has_one_bundle_per_tensor_parallel_worker_and_autoscales():
    settings = VLLMSettings(device="gpu", model="Qwen/Qwen2.5-Coder-7B-Instruct", tensor_parallel_size=2,
                            min_replicas=1, max_replicas=4, target_ongoing_requests=16)
    config = llm_config(settings, model=settings.model)
    assert config.accelerator_config.kind == "gpu"
    assert config.placement_group_config["bundles"] == [{"CPU": 1, "GPU": 1}] * 2
    assert config.engine_kwargs["tensor_parallel_size"] == 2 and "enforce_eager" not in config.engine_kwargs
    assert config.deployment_config["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16}


def test_stream_items_parse_as_batches_of_sse_lines():
    batch = ['data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n',
             'data: {"choices":[{"index":0,"delta":{"content":"It"}}]}\n\n',
             'data: {"choices":[{"index":0,"delta":{"content":" works [1]."},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n']
    assert chat_deltas(batch) == ["It", " works [1]."]
    with pytest.raises(RuntimeError, match="bad request"):
        chat_deltas('data: {"error": {"message": "bad request", "code": 400}}\n\n')


@pytest.mark.parametrize("answer, ok", [
    ("`publish` renames the new version into CURRENT [2]. Readers pin os.path names first [1][3].", True),
    ("It is atomic [1]", True),
    ("It is atomic.", False),  # a sentence without a citation
    ("It is atomic [4].", False),  # a source that was not given
    ("It is atomic [1]. And safe.", False),  # the second sentence is uncited
    ("Line one [1].\nLine two [2].", False),  # no newlines: sentences, not documents
])
def test_the_citation_grammar_admits_only_cited_sentences(answer, ok):
    assert bool(re.fullmatch(cited_sentences_regex(3), answer)) is ok
