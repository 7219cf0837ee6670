from __future__ import annotations

import pytest

from codeintel.storage.analysis import expand_text, identifier_subwords
from codeintel.storage.lexical import LexicalDoc, LexicalIndex


def test_identifier_subwords():
    assert identifier_subwords("getLogger parse_url HTTPServer os.path.join") == [
        "get", "logger", "parse", "url", "http", "server", "os", "path", "join", "os", "path", "join",
    ]
    assert identifier_subwords("plain words only") == []
    assert expand_text("getLogger") == "getLogger\nget logger"


@pytest.fixture
def index(tmp_path):
    ix = LexicalIndex(tmp_path / "lexical")
    docs = [
        LexicalDoc(1, "app/log.py", "setup", "", "log = logging.getLogger(__name__)"),
        LexicalDoc(2, "app/http.py", "HttpClient", "", "class HttpClient:\n    def sendRequest(self): ..."),
        LexicalDoc(3, "docs/readme.md", "", "", "Nothing relevant in this document."),
        LexicalDoc(4, "app/urls.py", "parse_url", "", "def parse_url(raw): return raw"),
    ]
    assert ix.add(docs) == 4
    yield ix
    ix.close()


def test_subword_identifier_matches(index):
    assert [i for i, _ in index.search("logger", 5)] == [1]
    assert [i for i, _ in index.search("get logger", 5)][0] == 1
    assert [i for i, _ in index.search("getLogger", 5)][0] == 1
    assert [i for i, _ in index.search("send request", 5)] == [2]
    assert [i for i, _ in index.search("parseUrl", 5)][0] == 4


def test_symbol_field_boosts_definitions(index):
    index.add([LexicalDoc(5, "app/other.py", "", "", "client = HttpClient()\nclient.close()")])
    assert [i for i, _ in index.search("HttpClient", 5)][:2] == [2, 5]


def test_path_words_are_searchable(index):
    assert 3 in [i for i, _ in index.search("readme", 5)]


def test_delete_and_append(index):
    index.delete([1])
    assert index.count() == 3
    assert index.search("logger", 5) == []
    index.add([LexicalDoc(9, "app/log2.py", "make_logger", "", "def make_logger(): ...")])
    assert [i for i, _ in index.search("logger", 5)] == [9]


def test_query_syntax_is_not_interpreted(index):
    for q in ['AND OR NOT', '"unbalanced', "a:b c^2 (x", "*", "title:[a TO z]", "\\", "~~~", "x" * 5000]:
        assert isinstance(index.search(q, 5), list)
