from __future__ import annotations

import pytest

from codeintel.answer.extractive import Passage
from codeintel.answer.prompt import build_prompt, format_passage, merge_passages
from codeintel.config import BGE_SMALL
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
    assert [(p.n, p.uri, p.start_line, p.end_line) for p in merged] == [(1, "a.py", 10, 35), (2, "b.py", 1, 5), (3, "a.py", 50, 52)]
    assert merged[0].text == lines(10, 35) and merged[0].symbol == "f, g"


def test_prompt_fits_the_window_and_is_deterministic(count_tokens):
    ps = [Passage(n, f"m{n}.py", 1, 40, f"fn{n}", lines(1, 40) + f"\n# module {n}") for n in range(1, 30)]
    for window in (600, 1200, 4096):
        prompt = build_prompt("what does fn3 do?", ps, count_tokens, window, max_new_tokens=200)
        assert prompt.prompt_tokens + 200 <= window
        assert [p.n for p in prompt.passages] == list(range(1, len(prompt.passages) + 1))
        assert prompt.dropped == len(ps) - len(prompt.passages)
        assert build_prompt("what does fn3 do?", ps, count_tokens, window, 200) == prompt
    small = build_prompt("q", ps, count_tokens, 600, 200)
    assert 0 < len(small.passages) < len(ps) and small.passages[0].uri == "m1.py"  # most relevant first
    assert "[1] m1.py:1-40 (fn1)" in small.messages[-1]["content"] and "Cite every claim" in small.messages[0]["content"]
    assert small.messages[-1]["content"].rstrip().endswith("of the sources it uses.")  # the question comes last
    with pytest.raises(ValueError):
        build_prompt("q", ps, count_tokens, 100, 200)


def test_format_passage():
    assert format_passage(Passage(2, "x.py", 3, 4, "", "a\nb")) == "[2] x.py:3-4\n```\na\nb\n```"
