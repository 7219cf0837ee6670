"""Answers from vLLM running in the cluster as a ``ray.serve.llm`` deployment.

:func:`llm_config` turns :class:`~codeintel.config.VLLMSettings` into Ray's ``LLMConfig`` (model,
engine arguments, CPU or GPU placement, autoscaling); the graph builder deploys it next to the
other deployments. :class:`VLLMEngine` is the answer engine the Generator holds: it builds the
same prompt as llama.cpp, asks for an OpenAI-style streamed chat completion through a ``chat``
port (the deployment handle, :class:`ServeChat`), and, with ``cited_by_construction``, constrains
decoding with a regex so that every sentence ends in ``[n]`` for a source that was given.

Nothing here imports vLLM or ``ray.serve.llm`` at module import: both load only when used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

from codeintel.answer.citations import cited_sentences_regex
from codeintel.answer.extractive import Passage
from codeintel.answer.prompt import build_prompt
from codeintel.config import AnswerSettings, VLLMSettings
from codeintel.errors import ModelUnavailableError

__all__ = ["VLLMEngine", "ServeChat", "llm_config", "resolve_model", "chat_deltas"]

ChatFn = Callable[[dict], AsyncIterator[Any]]  # an OpenAI chat request -> its streamed chunks


def resolve_model(settings: VLLMSettings) -> str:
    """The model vLLM loads: a folder or a Hugging Face id; "bundled" converts the packaged GGUF once."""
    if settings.model == "bundled":
        from codeintel.answer.hf_model import hf_model_dir

        return str(hf_model_dir())
    return settings.model


def llm_config(settings: VLLMSettings, model: str | None = None):
    """Ray's ``LLMConfig`` for ``settings``; ``model`` is :func:`resolve_model`'s answer."""
    try:
        from ray.serve.llm import LLMConfig
    except ImportError as exc:  # vllm (and ray.serve.llm with it) is an extra
        raise ModelUnavailableError(f"the vllm generator needs the vllm extra (make install-vllm): {exc}") from None
    model = model or resolve_model(settings)
    engine = {"dtype": settings.dtype, "max_model_len": settings.max_model_len, "max_num_seqs": settings.max_num_seqs,
              "tensor_parallel_size": settings.tensor_parallel_size}  # the served name is model_loading_config's model_id
    env = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}
    if settings.device == "cpu":
        engine["enforce_eager"] = True  # no CUDA graphs; torch.compile on 2 cores costs minutes
        # vLLM's OpenMP threads: the replica's share of the node, not every core (the other
        # deployments and the JVM run beside it); KV cache size is vLLM's CPU knob
        env |= {"VLLM_CPU_KVCACHE_SPACE": str(settings.kv_cache_gib), "VLLM_CPU_OMP_THREADS_BIND": "nobind",
                "OMP_NUM_THREADS": str(max(1, int(settings.cpus_per_replica)))}
        accelerator = {"kind": "cpu"}
        bundles = [{"CPU": settings.cpus_per_replica}]
    else:
        engine["gpu_memory_utilization"] = settings.gpu_memory_utilization
        accelerator = {"kind": "gpu"}
        bundles = [{"CPU": 1, "GPU": 1} for _ in range(settings.tensor_parallel_size)]  # one per GPU worker
    return LLMConfig(
        model_loading_config={"model_id": settings.served_name, "model_source": model},
        accelerator_config=accelerator,
        placement_group_config={"bundles": bundles, "strategy": "PACK" if settings.device == "cpu" else "STRICT_PACK"},
        engine_kwargs=engine,
        runtime_env={"env_vars": env},
        # the replica actor shares the engine's bundle: a quarter CPU for it, as for every other deployment
        deployment_config={"ray_actor_options": {"num_cpus": 0.25},
                           "autoscaling_config": {"min_replicas": settings.min_replicas, "max_replicas": settings.max_replicas,
                                                  "target_ongoing_requests": settings.target_ongoing_requests}},
        log_engine_metrics=True,
    )


def chat_deltas(chunk: Any) -> list[str]:
    """Content deltas in one streamed item: ``data: {json}`` lines (one or a batch), or a parsed chunk."""
    if isinstance(chunk, list):
        return [d for item in chunk for d in chat_deltas(item)]
    if isinstance(chunk, str):
        out = []
        for line in chunk.splitlines():
            line = line.strip()
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                out += chat_deltas(json.loads(line[5:]))
        return out
    if hasattr(chunk, "model_dump"):
        chunk = chunk.model_dump()
    if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
        raise RuntimeError(f"vLLM: {chunk['error'].get('message', chunk['error']) if isinstance(chunk['error'], dict) else chunk['error']}")
    return [text for choice in (chunk or {}).get("choices", []) if (text := (choice.get("delta") or {}).get("content"))]


class ServeChat:
    """The chat port over a ``ray.serve.llm`` deployment handle (``LLMServer.chat``)."""

    def __init__(self, handle) -> None:
        self.handle = handle

    async def __call__(self, request: dict) -> AsyncIterator[Any]:
        from ray.serve.llm.openai_api_models import ChatCompletionRequest

        stream = self.handle.options(stream=True).chat.remote(ChatCompletionRequest(**request))
        try:
            async for item in stream:
                yield item
        finally:
            stream.cancel()  # a reader that went away aborts the request inside vLLM

    async def unfinished(self) -> int:
        return await self.handle.unfinished.remote()

    async def alive(self) -> None:
        """vLLM's own engine health check, through the deployment (no decoding)."""
        await self.handle.check_health.remote()


def _tokenizer_counter(model: str) -> Callable[[str], int]:
    """Token counts with the served model's own tokenizer, in the Generator's process."""
    local = Path(model) / "tokenizer.json"
    if local.is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(local))
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
    from transformers import AutoTokenizer  # a Hugging Face id (GPU profile): the vllm extra has it

    hf = AutoTokenizer.from_pretrained(model)
    return lambda text: len(hf.encode(text, add_special_tokens=False))


class VLLMEngine:
    """An async answer engine: prompt in this process, decoding in the vLLM deployment."""

    def __init__(self, chat: ChatFn, settings: VLLMSettings = VLLMSettings(), model: str | None = None,
                 answer: AnswerSettings = AnswerSettings()) -> None:
        self.chat = chat
        self.settings = settings
        self.answer = answer
        self.model = model or resolve_model(settings)
        self.model_id = f"vllm:{settings.served_name}"
        self.count_tokens = _tokenizer_counter(self.model)
        self.params = {"engine": "vllm", "model": self.model, "temperature": settings.temperature,
                       "max_new_tokens": settings.max_new_tokens, "context_window": settings.max_model_len,
                       "cited_by_construction": settings.cited_by_construction}

    def request(self, messages: list[dict], sources: Sequence[int], max_tokens: int | None = None) -> dict:
        """The OpenAI chat request; constrained to sentences citing ``sources`` (numbers) when there are any."""
        body = {"model": self.settings.served_name, "messages": messages, "stream": True,
                "max_tokens": max_tokens or self.settings.max_new_tokens, "temperature": self.settings.temperature}
        if self.settings.cited_by_construction and sources:
            body["structured_outputs"] = {"regex": cited_sentences_regex(sources)}
        return body

    async def agenerate(self, question: str, passages: Sequence[Passage], usage: dict | None = None) -> AsyncIterator[str]:
        s = self.settings
        prompt = build_prompt(question, passages, self.count_tokens, s.max_model_len, s.max_new_tokens, self.answer,
                              example=self.answer.worked_example or not s.cited_by_construction)
        if usage is not None:
            usage.update(tokens_in=prompt.prompt_tokens, passages=prompt.passages)
        async for chunk in self.chat(self.request(prompt.messages, [p.n for p in prompt.passages])):
            for delta in chat_deltas(chunk):
                yield delta

    async def unfinished(self) -> int | None:
        unfinished = getattr(self.chat, "unfinished", None)
        return None if unfinished is None else await unfinished()

    async def acheck(self, decode: bool = False) -> None:
        """The engine is alive; with ``decode`` (at start), it also produced a token. Periodic
        health checks skip decoding: on a CPU a probe's prefill would take seconds from answers."""
        alive = getattr(self.chat, "alive", None)
        if not decode and alive is not None:
            return await alive()
        deltas = []
        async for chunk in self.chat(self.request([{"role": "user", "content": "Say OK."}], [], max_tokens=1)):
            deltas += chat_deltas(chunk)
        if not deltas:
            raise RuntimeError("vLLM produced no token for a health probe")
