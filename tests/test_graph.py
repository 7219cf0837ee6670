"""The code graph: extraction per file (codeintel.indexing.graph) and its tables and lookups in an
index version (codeintel.storage.graph), built by the real indexer."""

from __future__ import annotations

import textwrap

import pytest

from codeintel.config import Settings
from codeintel.indexing.graph import extract_graph, module_of, resolve_imports
from codeintel.indexing.pipeline import Indexer
from codeintel.storage.catalog import Catalog
from codeintel.storage.graph import CodeGraph
from codeintel.storage.layout import IndexLayout
from codeintel.storage.scope import Scope

from conftest import write_tree

PY = textwrap.dedent('''\
    import os.path as osp
    from .base import Base, helper as h
    from ..util import tools


    class Store(Base, tools.Mixin):
        """Keeps things."""

        def save(self, item):
            path = osp.join(self.root, item)
            return write(path)

        @property
        def size(self):
            return len(self.items)


    def write(path):
        def inner():
            return Store().save(path)
        return inner
    ''')


def test_python_definitions_get_qualified_names_kinds_and_lines():
    defs, _ = extract_graph("src/pkg/store.py", PY, "python")
    got = [(d.qualname, d.kind, d.start_line, d.end_line, d.parent) for d in defs]
    assert got == [
        ("pkg.store.Store", "class", 6, 15, ""),
        ("pkg.store.Store.save", "method", 9, 11, "pkg.store.Store"),
        ("pkg.store.Store.size", "method", 13, 15, "pkg.store.Store"),  # the decorator belongs to it
        ("pkg.store.write", "function", 18, 21, ""),
        ("pkg.store.write.inner", "function", 19, 20, "pkg.store.write"),
    ]


def test_python_references_calls_bases_and_imports_with_their_enclosing_definition():
    _, refs = extract_graph("src/pkg/store.py", PY, "python")
    got = {(r.kind, r.name, r.line, r.scope, r.module) for r in refs}
    assert ("call", "join", 10, "pkg.store.Store.save", "") in got
    assert ("call", "write", 11, "pkg.store.Store.save", "") in got
    assert ("call", "save", 20, "pkg.store.write.inner", "") in got and ("call", "Store", 20, "pkg.store.write.inner", "") in got
    assert ("inherit", "Base", 6, "pkg.store.Store", "") in got and ("inherit", "Mixin", 6, "pkg.store.Store", "") in got
    assert ("import", "path", 1, "", "os.path") in got
    assert ("import", "Base", 2, "", "pkg.base.Base") in got and ("import", "helper", 2, "", "pkg.base.helper") in got
    assert ("import", "tools", 3, "", "util.tools") in got  # ".." from package pkg: the top level


def test_imports_resolve_to_repository_files_on_the_path_tail():
    _, refs = extract_graph("src/pkg/store.py", PY, "python")
    uris = ["src/pkg/store.py", "src/pkg/base.py", "src/util/tools/__init__.py", "tests/test_store.py"]
    resolved = {r.module: r.target_uri for r in resolve_imports(refs, uris) if r.kind == "import"}
    assert resolved == {"os.path": "", "pkg.base.Base": "src/pkg/base.py", "pkg.base.helper": "src/pkg/base.py",
                        "util.tools": "src/util/tools/__init__.py"}
    assert module_of("src/pkg/__init__.py") == "pkg" and module_of("a/b.py") == "a.b"


@pytest.mark.parametrize("uri, lang, source, definition, call", [
    ("web/app.js", "javascript", "export class Router {\n  route(p) {\n    return split(p);\n  }\n}\n",
     ("web/app.js:Router.route", "method"), "split"),
    ("svc/main.go", "go", "package main\n\nfunc Serve(s *Server) {\n\ts.Listen()\n}\n", ("svc/main.go:Serve", "function"), "Listen"),
    ("lib.rs", "rust", "fn parse(s: &str) -> u32 {\n    s.trim().len() as u32\n}\n", ("lib.rs:parse", "function"), "len"),
])
def test_other_languages_get_definitions_and_calls(uri, lang, source, definition, call):
    defs, refs = extract_graph(uri, source, lang)
    assert definition in {(d.qualname, d.kind) for d in defs}
    assert call in {r.name for r in refs if r.kind == "call"}


def test_text_files_have_no_graph():
    assert extract_graph("README.md", "# def f(): pass\n", "markdown") == ([], [])


@pytest.fixture
def graph_repo(tmp_path):
    return write_tree(tmp_path / "repo", {
        "src/pkg/__init__.py": "",
        "src/pkg/base.py": "class Base:\n    def save(self):\n        return 1\n",
        "src/pkg/store.py": PY,
        "src/util/tools/__init__.py": "class Mixin:\n    pass\n",
        "tests/test_store.py": "from pkg.store import Store\n\n\ndef test_save():\n    assert Store().save('x')\n",
    })


def graph_of(index) -> tuple[CodeGraph, Catalog]:
    catalog = Catalog(IndexLayout(index).current().catalog)
    return CodeGraph(catalog.query), catalog


def test_the_index_answers_definitions_references_and_outlines(graph_repo, tmp_path, embedder):
    index = tmp_path / "index"
    report = Indexer(Settings(), embedder=embedder).run(graph_repo, index)
    assert "graph" in report.stage_seconds
    graph, catalog = graph_of(index)
    try:
        assert [(s.uri, s.qualname, s.start_line) for s in graph.definitions("Store")] == [("src/pkg/store.py", "pkg.store.Store", 6)]
        # a bare name finds every definition, the qualified one only its own
        assert {s.qualname for s in graph.definitions("save")} == {"pkg.base.Base.save", "pkg.store.Store.save"}
        assert [s.qualname for s in graph.definitions("Store.save")] == ["pkg.store.Store.save"]
        assert [s.qualname for s in graph.definitions("pkg.base.Base.save()")] == ["pkg.base.Base.save"]
        assert graph.definitions("Nowhere") == []

        uses = graph.references("Store")
        assert [(u.uri, u.line, u.kind, u.scope) for u in uses] == [
            ("src/pkg/store.py", 20, "call", "pkg.store.write.inner"),
            ("tests/test_store.py", 1, "import", ""),
            ("tests/test_store.py", 5, "call", "tests.test_store.test_save"),
        ]
        assert uses[2].text == "assert Store().save('x')"  # the line, from the indexed chunk
        assert [u.uri for u in graph.references("Store", Scope(exclude=("tests/",)))] == ["src/pkg/store.py"]

        outline = graph.outline("src/pkg/store.py")
        assert [s.name for s in outline] == ["Store", "save", "size", "write", "inner"]
        assert graph.outline("README.md") == []
    finally:
        catalog.close()


def test_a_reindex_carries_unchanged_files_and_re_resolves_imports(graph_repo, tmp_path, embedder):
    index = tmp_path / "index"
    indexer = Indexer(Settings(), embedder=embedder)
    indexer.run(graph_repo, index)
    (graph_repo / "src/pkg/base.py").unlink()  # the import target goes away
    (graph_repo / "src/pkg/extra.py").write_text("from .store import write\n\n\ndef more():\n    return write('y')\n")
    indexer.run(graph_repo, index)
    graph, catalog = graph_of(index)
    try:
        assert graph.definitions("Base") == [] and [s.qualname for s in graph.definitions("more")] == ["pkg.extra.more"]
        assert {(u.uri, u.kind) for u in graph.references("write")} >= {("src/pkg/store.py", "call"), ("src/pkg/extra.py", "call"),
                                                                        ("src/pkg/extra.py", "import")}
        targets = dict(catalog.query("SELECT module, target_uri FROM refs WHERE kind = 'import' AND uri = ?", ["src/pkg/store.py"]))
        assert targets["pkg.base.Base"] == "" and targets["util.tools"] == "src/util/tools/__init__.py"
        assert [s.name for s in graph.outline("src/pkg/store.py")] == ["Store", "save", "size", "write", "inner"]  # carried
    finally:
        catalog.close()


def test_callees_of_chunks_resolve_ambiguous_names_through_imports(graph_repo, tmp_path, embedder):
    index = tmp_path / "index"
    Indexer(Settings(), embedder=embedder).run(graph_repo, index)
    graph, catalog = graph_of(index)
    try:
        chunk = {uri: id_ for id_, uri in catalog.query("SELECT id, uri FROM chunks ORDER BY start_line DESC", [])}
        # test_save calls Store() (one definition) and .save(), defined in base.py and store.py: only
        # store.py is imported by the test, so base.py is not a callee
        callees = graph.callee_chunks([chunk["tests/test_store.py"]], limit=10)
        assert {uri for id_, uri in catalog.query("SELECT id, uri FROM chunks", []) if id_ in callees} == {"src/pkg/store.py"}
        assert graph.callee_chunks([], limit=10) == [] and graph.callee_chunks([chunk["src/pkg/base.py"]], limit=10) == []
    finally:
        catalog.close()


def test_definition_chunks_keep_the_names_order_and_the_best_definitions_of_each(graph_repo, tmp_path, embedder):
    index = tmp_path / "index"
    Indexer(Settings(), embedder=embedder).run(graph_repo, index)
    graph, catalog = graph_of(index)
    try:
        uri_of = dict(catalog.query("SELECT id, uri FROM chunks", []))
        assert [uri_of[i] for i in graph.definition_chunks(["test_save", "Nowhere", "Store"])] == ["tests/test_store.py", "src/pkg/store.py"]
        # two methods named save: at most per_name of them, the shorter path first
        assert [uri_of[i] for i in graph.definition_chunks(["save"], per_name=1)] == ["src/pkg/base.py"]
        assert [uri_of[i] for i in graph.definition_chunks(["save", "save"])] == ["src/pkg/base.py", "src/pkg/store.py"]
        assert graph.definition_chunks([]) == []
    finally:
        catalog.close()


def test_hydrated_rows_carry_how_widely_their_file_is_imported(graph_repo, tmp_path, embedder):
    (graph_repo / "src/pkg/extra.py").write_text("from .base import Base\n\n\nclass Extra(Base):\n    pass\n")
    index = tmp_path / "index"
    Indexer(Settings(), embedder=embedder).run(graph_repo, index)
    graph, catalog = graph_of(index)
    try:
        ids = [id_ for (id_,) in catalog.query("SELECT id FROM chunks ORDER BY uri, start_line", [])]
        by_uri = {r.uri: r.centrality for r in catalog.query_by_ids(ids)}
        # base.py is imported by store.py and extra.py, store.py by the test alone, the test by none
        assert by_uri["src/pkg/base.py"] == 1.0 and 0 < by_uri["src/pkg/store.py"] < 1.0 and by_uri["tests/test_store.py"] == 0.0
    finally:
        catalog.close()
