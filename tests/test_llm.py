"""The bundled CPU LLMs, for real: assembled from their part packages, tokenizer rebuilt, answers
cited by construction (GBNF grammar), streamed, cancelled."""

from __future__ import annotations

import msgspec
import pytest

import re

from codeintel.answer.citations import CitationTracker, cited_sentences_gbnf, cited_sentences_regex
from codeintel.answer.extractive import Passage
from codeintel.answer.llm import QWEN_CODER_05B, QWEN_CODER_15B, LlamaEngine, assemble_gguf
from codeintel.config import LlamaSettings
from codeintel.errors import ModelUnavailableError


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    import os

    os.environ["CODEINTEL_MODEL_CACHE"] = str(tmp_path_factory.mktemp("models"))
    engine = LlamaEngine()  # the default: the 1.5B, cited by construction
    assert engine.spec == QWEN_CODER_15B and engine.settings.cited_by_construction
    return engine


def test_assembled_model_is_verified_and_reused(engine, tmp_path):
    assert assemble_gguf(QWEN_CODER_15B).stat().st_size == QWEN_CODER_15B.size  # 22 parts, by the engine's load
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
    usage = {}
    deltas = list(engine.generate("How is the configuration file read?", passages, usage))
    text = "".join(deltas)
    assert len(deltas) > 3 and "load_config" in text
    assert re.fullmatch(cited_sentences_regex([1, 2]), text.strip()), text  # every sentence ends in [n]
    assert usage["tokens_in"] > 50 and [p.n for p in usage["passages"]] == [1, 2]
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


def test_the_grammar_holds_a_model_to_the_sources_it_was_given(engine):
    """Asked for an essay with no sources in sight, the grammar still gets only sentences citing [2]."""
    messages = [{"role": "user", "content": "Write two sentences about the history of Python."}]
    text = "".join(engine.chat(messages, 80, cited_sentences_gbnf([2]))).strip()
    assert re.findall(r"\[\d+\]", text) and set(re.findall(r"\[\d+\]", text)) == {"[2]"}, text
    done = text[: text.rindex("[2]") + 3]  # max_tokens may cut the last sentence; all before it is whole
    assert re.fullmatch(cited_sentences_regex([2]), done), text


@pytest.mark.parametrize("settings", [LlamaSettings(model="qwen2.5-coder-0.5b", speculative="ngram", max_new_tokens=16),
                                      LlamaSettings(speculative="draft", max_new_tokens=16)], ids=["ngram", "draft"])
def test_speculative_decoding_answers(engine, settings):
    passages = [Passage(1, "app/config.py", 1, 3, "load_config", "def load_config(path):\n    return json.load(open(path))")]
    text = "".join(LlamaEngine(settings).generate("What does load_config return?", passages))
    assert text.strip(), text
