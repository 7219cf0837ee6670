"""repo -> files -> chunks -> embeddings -> Parquet + DuckDB + FAISS + Lucene, incrementally.

A run reads every file, re-chunks only files whose content hash changed, embeds only chunks whose
text is in neither the previous version nor the embedding cache, and writes a complete new index
version that is published by an atomic swap. A run with nothing changed writes nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codeintel import __version__
from codeintel.config import Settings
from codeintel.embedding import Embedder, create_embedder
from codeintel.errors import EmptyRepositoryError, IndexFormatError, InputError
from codeintel.indexing.chunking import Chunk, content_hash
from codeintel.indexing.executor import Executor, LocalExecutor, Parsed, ProgressFn
from codeintel.indexing.graph import Reference, resolve_imports
from codeintel.indexing.walk import RepoInfo, SourceFile, Skipped, discover, load, repo_info
from codeintel.storage.catalog import build_catalog
from codeintel.storage.chunks import FILE_SCHEMA, embeddings_of, new_chunk_table, read_chunk_table, write_chunks
from codeintel.storage.dense import DenseIndex
from codeintel.storage.embcache import EmbeddingCache
from codeintel.storage.graph import DEF_SCHEMA, REF_SCHEMA, carry_graph, definitions_table, load_graph_tables, references_table
from codeintel.storage.layout import FORMAT_VERSION, IndexLayout, IndexManifest, RepoRecord, VersionPaths, link_tree, now_iso
from codeintel.storage.lexical import LexicalDoc, LexicalIndex

__all__ = ["IndexReport", "Indexer", "describe_dry_run", "embed_input", "ProgressFn", "EMBED_RATE_ESTIMATE"]

# chunks/s of the CPU embedder on the 2-core reference box (benchmarks/index_bench.py); only
# used to estimate --dry-run durations.
EMBED_RATE_ESTIMATE = 25.0

def _no_progress(stage: str, done: int, total: int) -> None:
    pass


class IndexReport(msgspec.Struct):
    index: str
    repo: str
    commit: str | None
    version: str | None
    files: int
    chunks: int
    changed_files: int
    removed_files: int
    new_chunks: int
    removed_chunks: int
    embedded: int
    reused_embeddings: int
    skipped: dict[str, int]
    skipped_files: list[tuple[str, str]]
    seconds: float
    up_to_date: bool = False
    dry_run: bool = False
    estimated_seconds: float | None = None
    compacted: bool = False
    dense_type: str = ""
    chunks_by_directory: dict[str, int] = {}  # dry runs: where the chunks come from, largest first
    stage_seconds: dict[str, float] = {}


def describe_dry_run(report: IndexReport) -> list[str]:
    """The lines ``codeintel index --dry-run`` prints (and the MCP ``estimate_index`` tool returns)."""
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(report.skipped.items(), key=lambda kv: -kv[1])) or "none"
    commit = f"@{report.commit[:12]}" if report.commit else ""
    lines = [f"dry run: {report.repo}{commit}: {report.files} files, {report.changed_files} new or changed, "
             f"{report.removed_files} removed; {report.new_chunks} chunks to write, "
             f"{report.new_chunks - report.reused_embeddings} to embed; skipped: {skipped}; "
             f"estimated {report.estimated_seconds:.0f} s"]
    if report.chunks_by_directory:
        lines.append("  chunks by top-level directory: " + ", ".join(f"{d} {n}" for d, n in report.chunks_by_directory.items()))
    return lines


def embed_input(chunk: Chunk) -> str:
    """What the embedder reads for a chunk: where it is and what it defines, then its text."""
    head = f"{chunk.uri} {chunk.symbol}".strip()
    return f"{head}\n{chunk.context}\n{chunk.text}" if chunk.context else f"{head}\n{chunk.text}"


def cache_key(chunk: Chunk) -> str:
    """The embedding cache's key: the hash of exactly what the embedder reads."""
    return content_hash(embed_input(chunk))


def _lexical_doc(chunk: Chunk) -> LexicalDoc:
    return LexicalDoc(chunk.id, chunk.uri, chunk.symbol, chunk.context, chunk.text)


def _lexical_docs_from_table(table: pa.Table):
    for row in table.select(["id", "uri", "symbol", "context", "text"]).to_pylist():
        yield LexicalDoc(row["id"], row["uri"], row["symbol"], row["context"], row["text"])


class Indexer:
    """Builds and updates one index directory. The embedder is injected (tests count its calls);
    ``executor`` says where parsing and embedding run (default: this process)."""

    def __init__(self, settings: Settings = Settings(), embedder: Embedder | None = None, cache_path: Path | None = None,
                 executor: Executor | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self.cache_path = cache_path
        self.executor = executor or LocalExecutor(lambda: self.embedder)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = create_embedder(self.settings.embedding, batch_size=self.settings.embed_batch_size,
                                             engine=self.settings.engines)
        return self._embedder

    def run(
        self,
        repo_path: str | Path,
        index_dir: str | Path,
        *,
        dry_run: bool = False,
        compact: bool = False,
        rebuild: bool = False,
        progress: ProgressFn = _no_progress,
    ) -> IndexReport:
        started = time.perf_counter()
        stages: dict[str, float] = {}
        info = repo_info(repo_path)
        layout = IndexLayout(index_dir)

        t = time.perf_counter()
        walk = discover(info.root, self.settings.walk)
        self._exclude_index_dir(walk, info, layout)
        files, skipped = self._read(walk.candidates, progress)
        skipped = walk.skipped + skipped
        stages["walk"] = time.perf_counter() - t
        if not files:
            counts = Counter(s.reason for s in skipped)
            detail = ", ".join(f"{n} {reason}" for reason, n in counts.most_common()) or "no files at all"
            raise EmptyRepositoryError(f"nothing to index under {info.root} ({detail})")

        if dry_run:
            return self._dry_run(info, layout, files, skipped, started, stages, progress)

        with layout.lock():
            previous = None if rebuild else layout.current_or_none()
            try:
                prev_manifest = previous.read_manifest() if previous else None
            except IndexFormatError:  # an older format (or a damaged version): build afresh beside it
                previous, prev_manifest = None, None
            if prev_manifest is not None:
                prev_manifest.contract.require_equal(self.settings.embedding)
                if prev_manifest.repo.name != info.name:
                    raise InputError(
                        f"index {layout.root} holds {prev_manifest.repo.name!r}, not {info.name!r}: use another --index"
                    )
            prev_files = self._previous_files(previous)
            current = {f.uri: f for f in files}
            changed = [f for f in files if prev_files.get(f.uri) != f.file_hash]
            removed = sorted(set(prev_files) - set(current))
            same_settings = prev_manifest is not None and prev_manifest.chunking == self.settings.chunk
            if previous is not None and not same_settings:
                changed, removed, previous, prev_manifest = files, [], None, None  # chunking changed: start over
            if previous is not None and not changed and not removed and not compact and prev_manifest.repo.commit == info.commit:
                report = self._report(layout, info, previous.name, files, skipped, started, stages, up_to_date=True)
                report.chunks = prev_manifest.chunks
                report.dense_type = prev_manifest.dense_type
                return report

            t = time.perf_counter()
            parsed = self.executor.parse(info.name, changed, self.settings.chunk, progress)
            new_chunks = [c for p in parsed for c in p.chunks]
            stages["chunk"] = time.perf_counter() - t

            touched = {f.uri for f in changed} | set(removed)
            prev_table = read_chunk_table(previous.chunks) if previous else None
            if prev_table is not None and touched:
                is_touched = pc.is_in(prev_table.column("uri"), value_set=pa.array(sorted(touched), pa.string()))
                carried = prev_table.filter(pc.invert(is_touched))
                replaced = prev_table.filter(is_touched)
            else:
                carried, replaced = prev_table, None
            old_ids = set(replaced.column("id").to_pylist()) if replaced is not None else set()
            new_ids = {c.id for c in new_chunks}
            remove_ids = sorted(old_ids - new_ids)
            add_chunks = [c for c in new_chunks if c.id not in old_ids]

            t = time.perf_counter()
            vectors, embedded, reused = self._embeddings(new_chunks, replaced, self._cache_path(layout), progress)
            stages["embed"] = time.perf_counter() - t

            t = time.perf_counter()
            build = layout.new_build()
            new_table = new_chunk_table(new_chunks, vectors, info.commit, self.settings.embedding)
            if carried is not None:
                carried = carried.set_column(
                    carried.schema.get_field_index("commit"), "commit", pa.array([info.commit] * carried.num_rows, pa.string())
                )
            total = write_chunks(build.chunks, [t_ for t_ in (carried, new_table) if t_ is not None], self.settings.embedding)
            self._write_files(build, files, new_chunks, carried)
            build_catalog(build.chunks, build.catalog)
            stages["store"] = time.perf_counter() - t

            t = time.perf_counter()
            self._graph(previous, build, parsed, touched, files)
            stages["graph"] = time.perf_counter() - t

            t = time.perf_counter()
            dense, compacted = self._dense(previous, build, remove_ids, add_chunks, new_chunks, vectors, compact)
            stages["dense"] = time.perf_counter() - t

            t = time.perf_counter()
            lexical_docs = self._lexical(previous, build, remove_ids, add_chunks, progress)
            stages["lexical"] = time.perf_counter() - t

            if not (total == dense.ntotal == lexical_docs):
                raise RuntimeError(f"index parts disagree: {total} chunks, {dense.ntotal} vectors, {lexical_docs} Lucene docs")

            build.write_manifest(
                IndexManifest(
                    format_version=FORMAT_VERSION,
                    codeintel_version=__version__,
                    contract=self.settings.embedding,
                    repo=RepoRecord(name=info.name, commit=info.commit, root=str(info.root)),
                    built_at=now_iso(),
                    files=len(files),
                    chunks=total,
                    skipped=dict(Counter(s.reason for s in skipped)),
                    walk=self.settings.walk,
                    chunking=self.settings.chunk,
                    dense_type=dense.manifest.index_type,
                    dense_primary=int(dense.primary.ntotal),
                    dense_secondary=int(dense.secondary.ntotal),
                    lexical_docs=lexical_docs,
                    parent=previous.name if previous else None,
                    seconds=round(time.perf_counter() - started, 3),
                )
            )
            published = layout.publish(build)
            report = self._report(layout, info, published.name, files, skipped, started, stages)
            report.chunks = total
            report.changed_files = len(changed)
            report.removed_files = len(removed)
            report.new_chunks = len(add_chunks)
            report.removed_chunks = len(remove_ids)
            report.embedded = embedded
            report.reused_embeddings = reused
            report.compacted = compacted
            report.dense_type = dense.manifest.index_type
            return report

    # -- stages ---------------------------------------------------------------------------
    @staticmethod
    def _exclude_index_dir(walk, info: RepoInfo, layout: IndexLayout) -> None:
        """An index directory inside the repository is never indexed."""
        try:
            rel = layout.root.resolve().relative_to(info.root).as_posix()
        except ValueError:
            return
        prefix = rel.rstrip("/") + "/"
        walk.candidates = [c for c in walk.candidates if not c.uri.startswith(prefix)]

    def _read(self, candidates, progress: ProgressFn) -> tuple[list[SourceFile], list[Skipped]]:
        files: list[SourceFile] = []
        skipped: list[Skipped] = []
        for i, candidate in enumerate(candidates, 1):
            loaded = load(candidate, self.settings.walk)
            (files if isinstance(loaded, SourceFile) else skipped).append(loaded)
            progress("read", i, len(candidates))
        return files, skipped

    @staticmethod
    def _previous_files(previous: VersionPaths | None) -> dict[str, str]:
        if previous is None:
            return {}
        table = pq.read_table(previous.files, columns=["uri", "file_hash"])
        return dict(zip(table.column("uri").to_pylist(), table.column("file_hash").to_pylist()))

    def _cache_path(self, layout: IndexLayout) -> Path:
        return self.cache_path or (layout.cache_dir / "embeddings.duckdb")

    def _embeddings(
        self, chunks: Sequence[Chunk], replaced: pa.Table | None, cache_path: Path, progress: ProgressFn
    ) -> tuple[np.ndarray, int, int]:
        """Vectors for chunks: from the previous version by id, then the cache, then the embedder."""
        dim = self.settings.embedding.dim
        vectors = np.zeros((len(chunks), dim), dtype=np.float32)
        missing = list(range(len(chunks)))
        reused = 0
        if replaced is not None and replaced.num_rows and chunks:
            old = dict(zip(replaced.column("id").to_pylist(), embeddings_of(replaced, dim)))
            still = []
            for i in missing:
                vec = old.get(chunks[i].id)
                if vec is None:
                    still.append(i)
                else:
                    vectors[i] = vec
            reused += len(missing) - len(still)
            missing = still
        if not missing:
            return vectors, 0, reused
        cache = EmbeddingCache(cache_path, self.settings.embedding)
        try:
            keys = [cache_key(chunks[i]) for i in missing]
            hits = cache.get_many(keys)
            todo = []
            for i, key in zip(missing, keys):
                if key in hits:
                    vectors[i] = hits[key]
                else:
                    todo.append((i, key))
            reused += len(missing) - len(todo)
            batch = max(self.settings.embed_batch_size * 8, 64)
            start = 0
            for out in self.executor.embed([embed_input(chunks[i]) for i, _ in todo], batch):
                part = todo[start : start + len(out)]
                for (i, _), vec in zip(part, out, strict=True):
                    vectors[i] = vec
                cache.put_many([key for _, key in part], out)  # each batch as it comes: an interrupted run keeps them
                start += len(out)
                progress("embed", start, len(todo))
            if start != len(todo):
                raise RuntimeError(f"the executor embedded {start} of {len(todo)} chunks")
        finally:
            cache.close()
        return vectors, len(todo), reused

    def _write_files(self, build: VersionPaths, files: Sequence[SourceFile], new_chunks: Sequence[Chunk], carried: pa.Table | None) -> None:
        counts = Counter(c.uri for c in new_chunks)
        if carried is not None:
            counts.update(carried.column("uri").to_pylist())
        table = pa.table(
            {
                "uri": [f.uri for f in files],
                "file_hash": [f.file_hash for f in files],
                "lang": [f.lang for f in files],
                "size": [f.size for f in files],
                "chunks": [counts.get(f.uri, 0) for f in files],
            },
            schema=FILE_SCHEMA,
        )
        pq.write_table(table, build.files)

    @staticmethod
    def _graph(previous: VersionPaths | None, build: VersionPaths, parsed: Sequence[Parsed], touched: set[str],
               files: Sequence[SourceFile]) -> None:
        """The code graph: rows of untouched files carried over, changed files' rows as parsed, every
        import re-resolved (its target may have come or gone)."""
        defs = [d for p in parsed for d in p.defs]
        refs = [r for p in parsed for r in p.refs]
        new_defs, new_refs = definitions_table(defs), references_table(refs)
        old_defs = carry_graph(previous.graph_defs, touched, DEF_SCHEMA) if previous else None
        old_refs = carry_graph(previous.graph_refs, touched, REF_SCHEMA) if previous else None
        all_defs = pa.concat_tables([t for t in (old_defs, new_defs) if t is not None])
        all_refs = pa.concat_tables([t for t in (old_refs, new_refs) if t is not None])
        pq.write_table(all_defs, build.graph_defs)
        pq.write_table(references_table(resolve_imports(
            (Reference(**row) for row in all_refs.to_pylist()), (f.uri for f in files))), build.graph_refs)
        load_graph_tables(build.catalog, build.graph_defs, build.graph_refs, build.files)

    def _dense(self, previous, build, remove_ids, add_chunks, new_chunks, vectors, compact) -> tuple[DenseIndex, bool]:
        settings = self.settings.dense
        if previous is not None:
            dense = DenseIndex.load(previous.dense, use_gpu=False)
            row = {c.id: i for i, c in enumerate(new_chunks)}
            add_vectors = vectors[[row[c.id] for c in add_chunks]] if add_chunks else np.zeros((0, self.settings.embedding.dim), np.float32)
            dense.updated(remove_ids, add_vectors, [c.id for c in add_chunks], settings)
            if not (compact or dense.needs_compaction(settings)):
                dense.save(build.dense)
                return dense, False
        table = read_chunk_table(build.chunks, columns=["id", "embedding"])
        dense = DenseIndex.build(embeddings_of(table, self.settings.embedding.dim), table.column("id").to_numpy(), self.settings.embedding, settings)
        dense.save(build.dense)
        return dense, previous is not None

    def _lexical(self, previous, build, remove_ids, add_chunks, progress: ProgressFn) -> int:
        lexical = LexicalIndex(build.lexical, self.settings.lexical)
        try:
            if previous is not None:
                link_tree(previous.lexical, build.lexical)
                lexical.delete(remove_ids)
                docs = (_lexical_doc(c) for c in add_chunks)
            else:
                docs = _lexical_docs_from_table(read_chunk_table(build.chunks, columns=["id", "uri", "symbol", "context", "text"]))
            lexical.add(docs)
            return lexical.count()
        finally:
            lexical.close()

    # -- reports --------------------------------------------------------------------------
    def _dry_run(self, info, layout, files, skipped, started, stages, progress) -> IndexReport:
        previous = layout.current_or_none()
        prev_files = self._previous_files(previous) if previous else {}
        changed = [f for f in files if prev_files.get(f.uri) != f.file_hash]
        chunks = [c for p in self.executor.parse(info.name, changed, self.settings.chunk, progress, graph=False) for c in p.chunks]
        report = self._report(layout, info, previous.name if previous else None, files, skipped, started, stages)
        report.dry_run = True
        report.changed_files = len(changed)
        report.removed_files = len(set(prev_files) - {f.uri for f in files})
        report.new_chunks = len(chunks)
        report.chunks = len(chunks) if previous is None else -1
        cache_path = self._cache_path(layout)
        hits = 0
        if cache_path.exists() and chunks:
            cache = EmbeddingCache(cache_path, self.settings.embedding)
            try:
                hits = len(cache.get_many([cache_key(c) for c in chunks]))
            finally:
                cache.close()
        report.reused_embeddings = hits
        by_dir = Counter(c.uri.split("/", 1)[0] + "/" if "/" in c.uri else "." for c in chunks)
        report.chunks_by_directory = dict(by_dir.most_common(10))
        report.estimated_seconds = round(time.perf_counter() - started + (len(chunks) - hits) / EMBED_RATE_ESTIMATE + 0.002 * len(chunks), 1)
        return report

    def _report(self, layout, info, version, files, skipped, started, stages, up_to_date=False) -> IndexReport:
        return IndexReport(
            index=str(layout.root),
            repo=info.name,
            commit=info.commit,
            version=version,
            files=len(files),
            chunks=0,
            changed_files=0,
            removed_files=0,
            new_chunks=0,
            removed_chunks=0,
            embedded=0,
            reused_embeddings=0,
            skipped=dict(Counter(s.reason for s in skipped)),
            skipped_files=[(s.uri, s.reason) for s in skipped],
            seconds=round(time.perf_counter() - started, 3),
            up_to_date=up_to_date,
            stage_seconds={k: round(v, 3) for k, v in stages.items()},
        )
