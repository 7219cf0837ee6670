from __future__ import annotations

import pytest

from codeintel.answer.citations import CitationTracker
from codeintel.answer.extractive import Passage

PASSAGES = [Passage(n, f"f{n}.py", n, n + 5, "", "x") for n in (1, 2, 3)]


def test_citations_found_once_in_first_order_across_token_boundaries():
    tracker = CitationTracker(PASSAGES)
    stream = ["The loader reads JSON [", "2", "] and caches it [2][", "1]. See also [3, 1", "] and [9]."]
    found = [p.n for delta in stream for p in tracker.feed(delta)] + [p.n for p in tracker.finish()]
    assert found == [2, 1, 3]
    assert tracker.cited == [2, 1, 3] and tracker.unknown == 1
    assert [p.uri for p in tracker.cited_passages] == ["f2.py", "f1.py", "f3.py"]


def test_brackets_that_are_not_citations():
    tracker = CitationTracker(PASSAGES)
    assert tracker.feed("arr[i] = x[0] + [a, b] and [ 2 ] ") == []
    assert tracker.unknown == 1  # x[0] looks like a citation of a source 0, which does not exist
    tracker = CitationTracker(PASSAGES)
    assert tracker.feed("values [" + "9" * 100) == []
    assert tracker.feed(" text") == [] and tracker.finish() == []


def test_attribution_points_an_uncited_answer_at_the_passages_it_used():
    from codeintel.answer.citations import attribute

    passages = [
        Passage(1, "app/config.py", 1, 6, "load_config", "def load_config(path):\n    with open(path) as f:\n        return json.load(f)"),
        Passage(2, "app/http_client.py", 1, 9, "HttpClient.send_request", "class HttpClient:\n    def send_request(self, url):\n        return urlopen(url)"),
        Passage(3, "web/main.js", 1, 3, "renderPage", "function renderPage(el) { el.innerHTML = template; }"),
    ]
    answer = "The configuration is read by `load_config`, which opens the file and parses it with json.load."
    assert [p.n for p in attribute(answer, passages)] == [1]
    assert [p.n for p in attribute("It calls send_request on the HttpClient.", passages)] == [2]
    assert attribute("The file is opened and parsed.", passages) == []  # prose alone attributes nothing


def test_citation_grammars_name_only_the_given_sources_and_allow_a_refusal():
    import re

    from codeintel.answer.citations import REFUSAL, cited_sentences_gbnf, cited_sentences_regex

    regex = cited_sentences_regex([1, 4])  # hit numbers, gaps allowed
    assert re.fullmatch(regex, "It renames the file into place [4]. Readers see the old one [1][4].")
    assert not re.fullmatch(regex, "It renames the file into place [2].")
    assert not re.fullmatch(regex, "Bare runs [1] [4] [1].")  # a sentence needs words before its citation
    assert re.fullmatch(regex, f"{REFUSAL} how tokens are refreshed.")
    assert not re.fullmatch(regex, "I cannot tell.")
    grammar = cited_sentences_gbnf([1, 4])
    assert 'ref ::= "[4]" | "[1]"' in grammar and f'refusal ::= "{REFUSAL} "' in grammar
    assert "sentence ::= char{12,300}" in grammar and grammar.startswith("root ::= cited | refusal")
    for build in (cited_sentences_regex, cited_sentences_gbnf):
        with pytest.raises(ValueError):
            build([])
