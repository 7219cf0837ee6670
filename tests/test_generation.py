"""The generator's streaming bridge and stream accounting, without Ray."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from codeintel.answer.extractive import Passage
from codeintel.answer.generation import GenerationService, stream_in_thread


def test_generator_streams_tokens_then_usage_and_counts_stopped_streams():
    generator = GenerationService("extractive")
    passages = [Passage(n, f"f{n}.py", 1, 2, "", "a\nb") for n in (1, 2, 3)]

    async def run(take: int | None):
        stream, events = generator.generate("q", passages), []
        async for event in stream:
            events.append(event)
            if take is not None and len(events) == take:
                break
        await stream.aclose()  # what Serve does when the caller cancels
        return events

    events = asyncio.run(run(None))
    assert [e.kind for e in events] == ["usage"] + ["token"] * 3
    assert events[0].data == {"tokens_in": 0, "model_params": {"passages": 3, "lines": 12}}
    asyncio.run(run(2))
    assert asyncio.run(generator.info())["streams"] == {"active": 0, "completed": 1, "stopped": 1}


def test_closing_the_stream_stops_the_engine_thread():
    stopped = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                n += 1
                time.sleep(0.001)
                yield n
        finally:
            stopped.set()

    async def take_three():
        stream, items = stream_in_thread(endless), []
        async for item in stream:
            items.append(item)
            if len(items) == 3:
                break
        await stream.aclose()
        return items

    assert asyncio.run(take_three()) == [1, 2, 3]
    assert stopped.wait(5), "the engine's iterator was never closed"


def test_an_engine_error_reaches_the_reader():
    def failing():
        yield "a"
        raise ValueError("engine broke")

    async def read():
        return [item async for item in stream_in_thread(failing)]

    with pytest.raises(ValueError, match="engine broke"):
        asyncio.run(read())


class _BrokenModel:
    model_id, params = "broken", {}

    def __init__(self) -> None:
        raise OSError("weights missing")


def test_an_llm_that_cannot_load_falls_back_to_extractive_and_says_why():
    service = GenerationService("llm", llm=_BrokenModel)
    assert asyncio.run(service.info())["model_id"] == "extractive" and "weights missing" in service.fallback
    asyncio.run(service.check())
    with pytest.raises(ValueError, match="unknown generator engine"):
        GenerationService("gpt")


class _VLLMDown:
    """A vLLM engine whose deployment never answers (bound by the test, as a fault)."""

    model_id, params = "vllm:down", {}

    async def acheck(self, decode: bool = False) -> None:
        raise ConnectionError("LLM deployment unreachable")


def test_a_vllm_engine_that_does_not_answer_falls_back_to_llama_cpp_and_says_why():
    service = GenerationService("vllm", llm=_VLLMDown)
    assert asyncio.run(service.info())["model_id"] == "extractive"  # nothing answers before start()
    asyncio.run(service.start(timeout_s=5))
    info = asyncio.run(service.info())
    assert info["model_id"].startswith("Qwen/") and "LLM deployment unreachable" in info["fallback"]
    asyncio.run(service.check())
