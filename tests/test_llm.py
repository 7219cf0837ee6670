"""The bundled CPU LLM, for real: assembled from its part packages, tokenizer rebuilt, streamed, cancelled."""

from __future__ import annotations

import msgspec
import pytest

from codeintel.answer.citations import CitationTracker
from codeintel.answer.extractive import Passage
from codeintel.answer.llm import QWEN_CODER_05B, LlamaEngine, assemble_gguf
from codeintel.errors import ModelUnavailableError


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    import os

    os.environ["CODEINTEL_MODEL_CACHE"] = str(tmp_path_factory.mktemp("models"))
    return LlamaEngine()


def test_assembled_model_is_verified_and_reused(engine, tmp_path):
    path = assemble_gguf()
    assert path.stat().st_size == QWEN_CODER_05B.size
    assert assemble_gguf() == path  # second call: cached
    bad = msgspec.structs.replace(QWEN_CODER_05B, sha256="0" * 64)
    with pytest.raises(ModelUnavailableError, match="sha256"):
        assemble_gguf(bad, cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.tmp"))


def test_tokenizer_counts_like_the_model(engine):
    assert engine.count_tokens("def load_config(path):") == 5  # def | load | _config | (path | ):
    assert engine.count_tokens("") == 0


def test_answer_streams_with_citations_and_cancels(engine):
    passages = [
        Passage(1, "app/config.py", 1, 6, "load_config", "import json\n\n\ndef load_config(path):\n    with open(path) as f:\n        return json.load(f)"),
        Passage(2, "app/http.py", 1, 3, "HttpClient", "class HttpClient:\n    def send(self, r):\n        return r"),
    ]
    deltas = list(engine.generate("How is the configuration file read?", passages))
    text = "".join(deltas)
    assert len(deltas) > 3 and "load_config" in text
    tracker = CitationTracker(passages)
    for d in deltas:
        tracker.feed(d)
    tracker.finish()
    assert 1 in tracker.cited
    stream = engine.chat([{"role": "user", "content": "Write a long essay about configuration files."}], 300)
    first = [next(stream) for _ in range(3)]
    stream.close()  # cancels generation inside llama.cpp
    assert len(first) == 3
    assert "".join(engine.chat([{"role": "user", "content": "Reply with the single word OK."}], 5)).strip()
