from __future__ import annotations

from codeintel.answer.extractive import ExtractiveEngine, Passage


def test_extractive_answer_cites_each_snippet_it_shows():
    passages = [Passage(n, f"f{n}.py", 10 * n, 10 * n + 30, f"sym{n}", "\n".join(f"line {i}" for i in range(40))) for n in (1, 2, 3, 4)]
    events = list(ExtractiveEngine(passages=2, lines=5).generate("q", passages))
    assert [e.kind for e in events] == ["token", "citation", "token", "citation"]
    assert events[0].data["text"].startswith("[1] f1.py:10-40 (sym1)\n```\nline 0\n")
    assert events[0].data["text"].count("line ") == 5
    assert events[1].data == {"n": 1, "uri": "f1.py", "start_line": 10, "end_line": 40}
    assert list(ExtractiveEngine().generate("q", [])) == []
