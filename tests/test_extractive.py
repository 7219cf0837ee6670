from __future__ import annotations

from codeintel.answer.extractive import ExtractiveEngine, Passage


def test_extractive_answer_cites_each_snippet_it_shows():
    passages = [Passage(n, f"f{n}.py", 10 * n, 10 * n + 30, f"sym{n}", "\n".join(f"line {i}" for i in range(40))) for n in (1, 2, 3, 4)]
    events = list(ExtractiveEngine(passages=2, lines=5).generate("q", passages))
    assert len(events) == 2
    assert events[0].startswith("[1] f1.py:10-40 (sym1)\n```\nline 0\n")
    assert events[0].count("line ") == 5 and events[1].startswith("[2] f2.py")
    assert list(ExtractiveEngine().generate("q", [])) == []
