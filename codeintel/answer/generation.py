"""The generator's side of an answer: which engine, streamed from a worker thread, counted.

Engines are synchronous iterators (llama.cpp calls back from its own thread); a server needs an
async stream that stops the engine as soon as its reader goes away. :func:`stream_in_thread` is
that bridge, and :class:`GenerationService` is what the Generator deployment holds.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import aclosing
from typing import AsyncIterator, Callable, Iterator, Protocol, Sequence, TypeVar

from codeintel.answer.extractive import AnswerEvent, ExtractiveEngine, Passage
from codeintel.config import Settings
from codeintel.errors import ModelUnavailableError

__all__ = ["AnswerEngine", "GenerationService", "stream_in_thread"]

T = TypeVar("T")
_END = object()


class AnswerEngine(Protocol):
    model_id: str
    params: dict

    def generate(self, question: str, passages: Sequence[Passage], usage: dict | None = None) -> Iterator[str]: ...

    def check(self) -> None:
        """Raise when the engine can no longer answer (what a health check runs)."""


async def stream_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Items of ``make()`` produced in a worker thread; closing this stream (or cancelling its
    reader) tells the worker to stop, which closes the engine's iterator at its next item."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def work() -> None:
        iterator = None
        try:
            iterator = make()
            for item in iterator:
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(items.put_nowait, item)
        except BaseException as exc:  # surfaced to the reader
            loop.call_soon_threadsafe(items.put_nowait, exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
            loop.call_soon_threadsafe(items.put_nowait, _END)

    loop.run_in_executor(None, work)
    try:
        while (item := await items.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class GenerationService:
    """``engine``: "extractive" (no model), "llm" (the bundled CPU model in llama.cpp), "vllm" (an
    async engine from ``llm``, checked by :meth:`start`), or an engine object (injected).

    A model that cannot load is replaced by the next engine down (vllm -> llama.cpp -> extractive),
    and ``fallback`` says why: readiness reports it as degraded."""

    def __init__(self, engine: str | AnswerEngine = "extractive", llm: Callable[[], AnswerEngine] | None = None,
                 fallback: str | None = None, settings: Settings = Settings()) -> None:
        self.fallback = fallback
        self.settings = settings
        self.streams = {"active": 0, "completed": 0, "stopped": 0}  # stopped: cancelled or failed mid-stream
        self._pending: Callable[[], AnswerEngine] | None = None
        if not isinstance(engine, str):
            self.engine = engine
        elif engine == "extractive":
            self.engine = ExtractiveEngine()
        elif engine == "llm":
            self.engine = self._load_llm(llm)
        elif engine == "vllm":
            self.engine, self._pending = ExtractiveEngine(), llm  # until start() has seen it answer
        else:
            raise ValueError(f"unknown generator engine {engine!r}: use 'vllm', 'llm' or 'extractive'")

    async def start(self, timeout_s: float = 900.0) -> None:
        """Bring up an async engine (vLLM): it must answer a probe within ``timeout_s`` (a first
        load converts and loads the model), else the service falls back to llama.cpp."""
        make, self._pending = self._pending, None
        if make is None:
            return
        try:
            engine = make()
            await asyncio.wait_for(engine.acheck(decode=True), timeout_s)
            self.engine = engine
        except Exception as exc:
            reason = f"vLLM unavailable: {type(exc).__name__}: {str(exc)[:200]}"
            self.engine = self._load_llm(None)
            self.fallback = reason + (f"; {self.fallback}" if self.fallback else "; answering with llama.cpp")

    def _load_llm(self, make: Callable[[], AnswerEngine] | None) -> AnswerEngine:
        try:
            if make is None:
                from codeintel.answer.llm import LlamaEngine

                make = lambda: LlamaEngine(self.settings.llm, self.settings.answer)  # noqa: E731
            engine = make()
            engine.check()  # assemble, tokenizer, weights: fail here, not mid-request
            return engine
        except (ModelUnavailableError, ImportError, OSError) as exc:
            self.fallback = f"LLM unavailable, answering extractively: {exc}"
            return ExtractiveEngine()

    def _deltas(self, question: str, passages: list[Passage], usage: dict) -> AsyncIterator[str]:
        agenerate = getattr(self.engine, "agenerate", None)
        if agenerate is not None:  # an async engine (vLLM) streams in this event loop
            return agenerate(question, passages, usage)
        return stream_in_thread(lambda: self.engine.generate(question, passages, usage))

    async def generate(self, question: str, passages: list[Passage]) -> AsyncIterator[AnswerEvent]:
        """A usage event (prompt tokens, model parameters), then token events; usage comes first even
        when the stream stops early, since the prompt is built by the first token."""
        usage: dict = {}
        self.streams["active"] += 1
        completed = reported = False
        try:
            async with aclosing(self._deltas(question, passages, usage)) as deltas:
                async for delta in deltas:
                    if not reported:
                        yield self._usage(usage)
                        reported = True
                    yield AnswerEvent("token", {"text": delta})
            if not reported:
                yield self._usage(usage)
            completed = True
        finally:
            self.streams["active"] -= 1
            self.streams["completed" if completed else "stopped"] += 1

    def _usage(self, usage: dict) -> AnswerEvent:
        data = {"tokens_in": usage.get("tokens_in", 0), "model_params": self.engine.params}
        if usage.get("passages"):  # the focused lines the prompt showed, for citations
            data["passages"] = usage["passages"]
        return AnswerEvent("usage", data)

    async def info(self) -> dict:
        """What readiness shows; ``engine_requests``: requests the engine itself still holds (vLLM)."""
        unfinished = getattr(self.engine, "unfinished", None)
        return {"model_id": self.engine.model_id, "fallback": self.fallback, "streams": dict(self.streams),
                "engine_requests": None if unfinished is None else await unfinished()}

    async def check(self) -> None:
        acheck = getattr(self.engine, "acheck", None)
        if acheck is not None:
            await acheck()
        else:
            await asyncio.to_thread(self.engine.check)
