from __future__ import annotations

import pytest

from codeintel.answer.extractive import Passage
from codeintel.answer.citations import REFUSAL
from codeintel.answer.prompt import build_prompt, focus, format_passage, merge_passages
from codeintel.config import BGE_SMALL, AnswerSettings
from codeintel.retrieval.query import query_terms
from codeintel.models import bundled_model_dir


@pytest.fixture(scope="module")
def count_tokens():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundled_model_dir(BGE_SMALL.weights) / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def lines(a: int, b: int) -> str:
    return "\n".join(f"line {i}" for i in range(a, b + 1))


def test_overlapping_and_adjacent_spans_merge():
    ps = [Passage(1, "a.py", 10, 20, "f", lines(10, 20)), Passage(2, "b.py", 1, 5, "", lines(1, 5)),
          Passage(3, "a.py", 18, 30, "g", lines(18, 30)), Passage(4, "a.py", 31, 35, "", lines(31, 35)), Passage(5, "a.py", 50, 52, "", lines(50, 52))]
    merged = merge_passages(ps)
    # each keeps its hit's number: [n] means the same in the hits, the prompt and the citations
    assert [(p.n, p.uri, p.start_line, p.end_line) for p in merged] == [(1, "a.py", 10, 35), (2, "b.py", 1, 5), (5, "a.py", 50, 52)]
    assert merged[0].text == lines(10, 35) and merged[0].symbol == "f, g"


WHOLE = AnswerSettings(max_sources=100, source_lines=0, source_tokens=0)


def test_prompt_fits_the_window_and_is_deterministic(count_tokens):
    ps = [Passage(n, f"m{n}.py", 1, 40, f"fn{n}", lines(1, 40) + f"\n# module {n}") for n in range(1, 30)]
    for window in (600, 1200, 4096):
        prompt = build_prompt("what does fn3 do?", ps, count_tokens, window, max_new_tokens=200, shape=WHOLE)
        assert prompt.prompt_tokens + 200 <= window
        assert [p.n for p in prompt.passages] == list(range(1, len(prompt.passages) + 1))
        assert prompt.dropped == len(ps) - len(prompt.passages)
        assert build_prompt("what does fn3 do?", ps, count_tokens, window, 200, WHOLE) == prompt
    small = build_prompt("q", ps, count_tokens, 600, 200, WHOLE)
    assert 0 < len(small.passages) < len(ps) and small.passages[0].uri == "m1.py"  # most relevant first
    assert "[1] m1.py:1-40 (fn1)" in small.messages[-1]["content"] and "Cite every claim" in small.messages[0]["content"]
    assert small.messages[-1]["content"].rstrip().endswith(f"reply: {REFUSAL} ...")  # the question and the rules come last
    with pytest.raises(ValueError):
        build_prompt("q", ps, count_tokens, 100, 200)


def test_sources_are_few_short_and_keep_their_numbers(count_tokens):
    big = Passage(1, "big.py", 100, 159, "Store", "\n".join(f"    x{i} = {i}" for i in range(40))
                  + "\n    def publish(self, version):\n        os.replace(tmp, current)  # publish atomically\n" + "\n".join(f"    y{i} = {i}" for i in range(18)))
    ps = [Passage(n, f"m{n}.py", 1, 3, "", lines(1, 3)) for n in (2, 3, 4, 5)]
    prompt = build_prompt("how is a version published atomically?", [big, *ps], count_tokens, 4096, 200,
                          AnswerSettings(max_sources=3, source_lines=10, source_tokens=0))
    assert [p.n for p in prompt.passages] == [1, 2, 3] and prompt.dropped == 2
    first = prompt.passages[0]
    assert first.end_line - first.start_line == 9 and "def publish(self, version):" in first.text  # the lines that match
    assert first.start_line > 100 and first.text == "\n".join(big.text.split("\n")[first.start_line - 100:first.end_line - 99])
    tight = build_prompt("how is a version published atomically?", [big, *ps], count_tokens, 4096, 200,
                         AnswerSettings(max_sources=3, source_lines=10, source_tokens=count_tokens(format_passage(first)) + 2))
    assert [p.n for p in tight.passages] == [1]  # the token budget for sources binds before the count


def test_focus_keeps_short_passages_and_prefers_the_earliest_best_window():
    p = Passage(4, "a.py", 10, 14, "f", lines(10, 14))
    assert focus(p, query_terms("line"), 10) is p and focus(p, query_terms("x"), 0) is p
    cut = focus(Passage(4, "a.py", 10, 29, "f", lines(10, 29)), frozenset(), 5)
    assert (cut.n, cut.start_line, cut.end_line, cut.text) == (4, 10, 14, lines(10, 14))  # nothing matches: the start


def test_worked_example_only_when_asked(count_tokens):
    ps = [Passage(1, "a.py", 1, 3, "", lines(1, 3))]
    plain = build_prompt("q", ps, count_tokens, 4096, 200)
    shown = build_prompt("q", ps, count_tokens, 4096, 200, example=True)
    assert [m["role"] for m in plain.messages] == ["system", "user"]
    assert [m["role"] for m in shown.messages] == ["system", "user", "assistant", "user"]
    assert plain.messages[0] == shown.messages[0]  # one system prompt: llama.cpp keeps its KV cache across requests


def test_format_passage():
    assert format_passage(Passage(2, "x.py", 3, 4, "", "a\nb")) == "[2] x.py:3-4\n```\na\nb\n```"
