"""The graph's back-end deployments. Each holds one engine and forwards to codeintel logic.

Engines are made from the index directory by default and may be injected (tests, GPU variants).
Every deployment implements ``check_health`` so Serve restarts a broken replica, and ``info`` for
readiness.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
from ray import serve

from codeintel.answer.extractive import AnswerEvent, ExtractiveEngine, Passage
from codeintel.answer.llm import LlamaEngine
from codeintel.config import Settings
from codeintel.embedding import Embedder, create_embedder
from codeintel.errors import CodeIntelError, IndexLockedError, InputError, ModelUnavailableError, NotIndexedError
from codeintel.indexing.pipeline import Indexer
from codeintel.rerank import Reranker, create_reranker
from codeintel.retrieval.query import PreparedQuery
from codeintel.retrieval.retrievers import LexicalRetriever as LexicalEngine
from codeintel.retrieval.retrievers import RetrieverResult
from codeintel.service.scopes import create_registry
from codeintel.storage.catalog import Catalog, ChunkRow
from codeintel.storage.chunks import embeddings_of, read_chunk_table
from codeintel.storage.dense import DenseIndex, set_search_threads
from codeintel.storage.layout import IndexLayout, IndexManifest, VersionLease, VersionPaths, now_iso
from codeintel.storage.lexical import LexicalIndex
from codeintel.storage.scope import Scope
from codeintel.storage.source import FileLines, check_uri, read_lines

__all__ = ["EmbedderDeployment", "FaissShard", "LexicalRetriever", "Hydrator", "IndexWriter", "RerankerDeployment", "ScopeStore", "Generator"]


_END = object()


@serve.deployment(name="Embedder", ray_actor_options={"num_cpus": 0.25})
class EmbedderDeployment:
    def __init__(self, settings: Settings | None = None, engine: Embedder | None = None) -> None:
        self.settings = settings or Settings()
        self.engine = engine or create_embedder(self.settings.embedding)
        self.engine.embed_queries(["warm up"])  # load the model before taking traffic

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        return self.engine.embed_queries(queries)

    def info(self) -> dict:
        return {"dim": self.engine.contract.dim, "model_id": self.engine.contract.model_id}

    def check_health(self) -> None:
        if self.engine.embed_queries(["health"]).shape != (1, self.engine.contract.dim):
            raise RuntimeError("embedder returned a wrong shape")


class _Open:
    """One index version open in a replica: its engines, its lease, and the calls using it."""

    def __init__(self, state, lease: VersionLease) -> None:
        self.state, self.lease = state, lease
        self.refs = 0
        self.retired = False


class _Versioned:
    """The index versions a call may be pinned to, each held open under a VersionLease.

    The ingress pins every request to the version CURRENT names when it starts and passes that name
    to each call, so a reindex that publishes mid-request never mixes versions. A replica opens a
    version on first use and closes older ones once no call uses them (at most ``keep`` stay open);
    the lease keeps the indexer from deleting files a replica still reads. ``user_config:
    {index_dir: ...}`` (serve_config.yaml) points a running replica at another index.
    """

    keep = 2
    index_dir: str

    def _start(self, index_dir: str) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}
        self.index_dir = index_dir
        with self._version(None):  # open CURRENT now: a broken index fails the replica at start
            pass

    def open_version(self, paths: VersionPaths, manifest: IndexManifest):
        raise NotImplementedError

    def close_version(self, state) -> None:
        pass

    def reconfigure(self, user_config: dict) -> None:
        index_dir = (user_config or {}).get("index_dir")
        if index_dir and index_dir != self.index_dir:
            with self._lock:
                retired, self._open, self.index_dir = list(self._open.values()), {}, index_dir
                for entry in retired:
                    entry.retired = True
                    self._close_if_idle(entry)
            with self._version(None):
                pass

    @contextmanager
    def _version(self, name: str | None):
        """The state of version ``name`` (None: CURRENT), held open for the duration of the block."""
        with self._lock:
            entry = self._acquire(name)
        try:
            yield entry.state
        finally:
            with self._lock:
                entry.refs -= 1
                self._close_if_idle(entry)

    def _acquire(self, name: str | None) -> _Open:
        layout = IndexLayout(self.index_dir)
        name = name or layout.current().name
        entry = self._open.get(name)
        if entry is None:
            paths = layout.version(name)
            lease = VersionLease(paths)
            try:
                state = self.open_version(paths, paths.read_manifest())
            except BaseException:
                lease.release()
                raise
            entry = self._open[name] = _Open(state, lease)
        entry.refs += 1
        for old in sorted(self._open)[: -self.keep]:  # names sort by build time
            retired = self._open.pop(old)
            retired.retired = True
            self._close_if_idle(retired)
        return entry

    def _close_if_idle(self, entry: _Open) -> None:
        if entry.retired and entry.refs == 0:
            self.close_version(entry.state)
            entry.lease.release()

    def versions(self) -> list[str]:
        with self._lock:
            return sorted(self._open)


@serve.deployment(name="FaissShard", ray_actor_options={"num_cpus": 0.25})
class FaissShard(_Versioned):
    """Shard ``shard`` of ``num_shards``: the vectors whose chunk id % num_shards == shard."""

    def __init__(self, index_dir: str, shard: int = 0, num_shards: int = 1, use_gpu: bool | None = None) -> None:
        set_search_threads(1)
        self.shard, self.num_shards, self.use_gpu = shard, num_shards, use_gpu
        self._start(index_dir)

    def open_version(self, paths: VersionPaths, manifest: IndexManifest) -> DenseIndex:
        if self.num_shards == 1:
            index = DenseIndex.load(paths.dense, use_gpu=self.use_gpu)
        else:
            table = read_chunk_table(paths.chunks, columns=["id", "embedding"])
            ids = table.column("id").to_numpy()
            mine = ids % self.num_shards == self.shard
            index = DenseIndex.build(embeddings_of(table, manifest.contract.dim)[mine], ids[mine], manifest.contract, Settings().dense)
            index.place(self.use_gpu)
        if os.environ.get("CODEINTEL_FAULT_FAISS_DIM"):  # fault injection for readiness tests
            index.manifest.vec_dim = int(os.environ["CODEINTEL_FAULT_FAISS_DIM"])
        return index

    def search(self, vector: np.ndarray, k: int, allowed: list[int] | None = None, version: str | None = None) -> list[tuple[int, float]]:
        selector = None if allowed is None else np.asarray(allowed, dtype=np.int64)
        with self._version(version) as index:
            return index.search(vector, k, allowed=selector)[0]

    def info(self) -> dict:
        with self._version(None) as index:
            m = index.manifest
            return {"shard": self.shard, "num_shards": self.num_shards, "dim": m.vec_dim, "vectors": index.ntotal,
                    "index_type": m.index_type, "gpu": m.gpu, "gpu_reason": m.gpu_reason, "versions_open": self.versions()}

    def check_health(self) -> None:
        with self._version(None) as index:
            if index.ntotal < 0:
                raise RuntimeError("FAISS index lost")


@dataclass
class _Lexical:
    index: LexicalIndex
    engine: LexicalEngine
    docs: int


@serve.deployment(name="LexicalRetriever", ray_actor_options={"num_cpus": 0.25})
class LexicalRetriever(_Versioned):
    """BM25 over Lucene; one JVM per replica (started here, in the replica process)."""

    def __init__(self, index_dir: str) -> None:
        self.fail = bool(os.environ.get("CODEINTEL_FAULT_LEXICAL"))  # fault injection for readiness tests
        self._slow_s, self._slow_until = 0.0, 0.0
        self._start(index_dir)

    def inject_delay(self, seconds: float, for_s: float) -> None:
        """Fault injection (benchmarks/load_fault.py): each retrieve sleeps ``seconds`` for the next ``for_s``.

        Only when the replica runs with CODEINTEL_FAULTS=1: a production graph cannot be slowed by a call."""
        if os.environ.get("CODEINTEL_FAULTS") != "1":
            raise RuntimeError("fault injection is disabled (set CODEINTEL_FAULTS=1 in the replica's environment)")
        self._slow_s, self._slow_until = seconds, time.monotonic() + for_s

    def open_version(self, paths: VersionPaths, manifest: IndexManifest) -> _Lexical:
        index = LexicalIndex(paths.lexical)
        return _Lexical(index, LexicalEngine(index), index.count())

    def close_version(self, state: _Lexical) -> None:
        state.index.close()

    def retrieve(self, query: PreparedQuery, k: int, allowed: frozenset[int] | None = None, version: str | None = None) -> RetrieverResult:
        if self.fail:
            raise RuntimeError("lexical retriever failing (fault injection)")
        if time.monotonic() < self._slow_until:
            time.sleep(self._slow_s)
        with self._version(version) as lexical:
            return lexical.engine.retrieve(query, k, allowed)

    def info(self) -> dict:
        with self._version(None) as lexical:
            return {"docs": lexical.docs, "failing": self.fail, "versions_open": self.versions()}

    def check_health(self) -> None:
        with self._version(None) as lexical:
            lexical.index.search("health", 1)


@dataclass
class _Catalog:
    paths: VersionPaths
    manifest: IndexManifest
    catalog: Catalog
    parquet_dim: int


@serve.deployment(name="Hydrator", ray_actor_options={"num_cpus": 0.25})
class Hydrator(_Versioned):
    """DuckDB catalog: hydrate ids with the scope in SQL; also scope ids, path mentions, files, status."""

    def __init__(self, index_dir: str) -> None:
        self._start(index_dir)

    def open_version(self, paths: VersionPaths, manifest: IndexManifest) -> _Catalog:
        dim = int(read_chunk_table(paths.chunks, columns=["embedding"]).schema.field("embedding").type.list_size)
        return _Catalog(paths, manifest, Catalog(paths.catalog), dim)

    def close_version(self, state: _Catalog) -> None:
        state.catalog.close()

    def query_by_ids(self, ids: list[int], scope: Scope, version: str | None = None) -> list[ChunkRow]:
        with self._version(version) as v:
            return v.catalog.query_by_ids(ids, scope)

    def ids_in_scope(self, scope: Scope, version: str | None = None) -> list[int]:
        with self._version(version) as v:
            return v.catalog.ids_in_scope(scope)

    def ids_for_paths(self, paths: tuple[str, ...], limit: int, version: str | None = None) -> list[int]:
        with self._version(version) as v:
            return v.catalog.ids_for_paths(paths, limit)

    @staticmethod
    def _indexed(v: _Catalog, uri: str) -> str:
        uri = check_uri(uri)
        if not v.catalog.has_file(uri):
            raise NotIndexedError(f"{uri!r} is not a file of the index of {v.manifest.repo.name} (paths are repo-relative, as search hits report them)")
        return uri

    def file_chunks(self, uri: str, start_line: int | None, end_line: int | None, limit: int) -> tuple[list[ChunkRow], bool]:
        """The indexed chunks of one file overlapping a line range, and whether ``limit`` cut them."""
        with self._version(None) as v:
            rows = v.catalog.file_chunks(self._indexed(v, uri), start_line, end_line, limit + 1)
        return rows[:limit], len(rows) > limit

    def file_lines(self, uri: str, start_line: int, end_line: int | None, max_lines: int) -> FileLines:
        """Lines of the live file under the indexed repository root; only files of the index are served."""
        with self._version(None) as v:
            return read_lines(v.manifest.repo.root, self._indexed(v, uri), start_line, end_line, max_lines)

    def info(self) -> dict:
        with self._version(None) as v:
            m = v.manifest
            return {
                "version": v.paths.name, "repo": m.repo.name, "commit": m.repo.commit, "root": m.repo.root,
                "files": m.files, "chunks": v.catalog.count(), "built_at": m.built_at, "parquet_dim": v.parquet_dim,
                "contract": {"model_id": m.contract.model_id, "dim": m.contract.dim, "dtype": m.contract.dtype,
                             "normalized": m.contract.normalized, "metric": m.contract.metric},
                "dense_type": m.dense_type, "lexical_docs": m.lexical_docs, "path": str(Path(v.paths.root)),
                "versions_open": self.versions(),
            }

    def check_health(self) -> None:
        with self._version(None) as v:
            v.catalog.count()


@serve.deployment(name="IndexWriter", num_replicas=1, ray_actor_options={"num_cpus": 0.25})
class IndexWriter:
    """Incremental reindexes of the served repository, one at a time, in a worker thread.

    Publishing is the index's atomic CURRENT swap; serving replicas open the new version when the
    first request pinned to it arrives, and in-flight requests finish on the version they started on.
    """

    def __init__(self, index_dir: str, indexer: Indexer | None = None, history: int = 20) -> None:
        self.index_dir, self.indexer, self.history = index_dir, indexer, history
        self.jobs: dict[str, dict] = {}
        self._lock = threading.Lock()

    def reconfigure(self, user_config: dict) -> None:
        """``user_config: {index_dir}`` (serve_config.yaml): reindex the index the replicas now serve."""
        self.index_dir = (user_config or {}).get("index_dir") or self.index_dir

    def start(self, path: str | None = None, rebuild: bool = False) -> dict:
        """Start a reindex of the indexed repository (``path``: it or a folder inside it); the job's state.

        ``rebuild`` ignores the previous version (the way back from a damaged one)."""
        root = Path(IndexLayout(self.index_dir).current().read_manifest().repo.root)
        if path is not None:
            target = Path(path).resolve()
            if target != root and root not in target.parents:
                raise InputError(f"{path} is not inside the indexed repository {root}: this server reindexes only that")
        with self._lock:
            running = [j for j in self.jobs.values() if j["state"] == "running"]
            if running:
                raise IndexLockedError(f"reindex {running[0]['job_id']} is still running; poll it at /v1/reindex/{running[0]['job_id']}")
            job = {"job_id": secrets.token_hex(8), "state": "running", "path": str(root), "stage": "start", "done": 0, "total": 0,
                   "rebuild": rebuild, "summary": None, "error": None, "started_at": now_iso(), "ended_at": None}
            self.jobs[job["job_id"]] = job
            for old in list(self.jobs)[: -self.history]:
                del self.jobs[old]
        threading.Thread(target=self._run, args=(job, root, rebuild), name="reindex", daemon=True).start()
        return dict(job)

    def _run(self, job: dict, root: Path, rebuild: bool) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            job.update(stage=stage, done=done, total=total)

        try:
            self.indexer = self.indexer or Indexer()
            report = self.indexer.run(root, self.index_dir, rebuild=rebuild, progress=progress)
            summary = msgspec.to_builtins(report)
            summary["skipped_files"] = summary["skipped_files"][:50]
            outcome = {"state": "done", "stage": "published", "summary": summary}
        except CodeIntelError as exc:
            outcome = {"state": "failed", "error": str(exc)}
        except Exception as exc:  # reported through the job, never lost in a thread
            outcome = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        job.update(outcome, ended_at=now_iso())  # one update: a poll never sees "done" without its end time

    def job(self, job_id: str) -> dict | None:
        job = self.jobs.get(job_id)
        return None if job is None else dict(job)

    def info(self) -> dict:
        return {"running": [j["job_id"] for j in self.jobs.values() if j["state"] == "running"]}


@serve.deployment(name="Reranker", ray_actor_options={"num_cpus": 0.25})
class RerankerDeployment:
    def __init__(self, engine: Reranker | None = None) -> None:
        self.engine = engine or create_reranker()
        self.engine.score("warm", ["up"])

    def score(self, query: str, passages: list[str]) -> list[float]:
        return [float(x) for x in self.engine.score(query, passages)]

    def info(self) -> dict:
        return {"model_id": self.engine.spec.model_id}

    def check_health(self) -> None:
        self.engine.score("health", ["check"])


@serve.deployment(name="ScopeStore", num_replicas=1, ray_actor_options={"num_cpus": 0.1})
class ScopeStore:
    """The one shared session-scope registry (exactly one replica by design)."""

    def __init__(self, backend: str = "memory", ttl_s: float = 3600.0, max_sessions: int = 10_000) -> None:
        self.registry = create_registry(backend, ttl_s, max_sessions)

    def get(self, session_id: str) -> Scope | None:
        return self.registry.get(session_id)

    def put(self, session_id: str, scope: Scope) -> Scope:
        return self.registry.put(session_id, scope)

    def delete(self, session_id: str) -> bool:
        return self.registry.delete(session_id)

    def info(self) -> dict:
        return {"sessions": len(self.registry), "hits": self.registry.hits, "misses": self.registry.misses}



@serve.deployment(name="Generator", ray_actor_options={"num_cpus": 0.25})
class Generator:
    """Streams answer events for a question and its passages.

    ``engine="llm"``: the bundled CPU model through llama.cpp; when it cannot load, the replica falls
    back to the extractive engine and says why (readiness reports degraded). ``"extractive"``: no model.
    """

    def __init__(self, engine: str = "extractive") -> None:
        self.fallback: str | None = None
        self.streams = {"active": 0, "completed": 0, "stopped": 0}  # stopped: cancelled or failed mid-stream
        self.engine = ExtractiveEngine()
        if engine == "llm":
            try:
                llm = LlamaEngine()
                llm.count_tokens("warm up")  # assemble, tokenizer, weights: fail here, not mid-request
                self.engine = llm
            except (ModelUnavailableError, ImportError, OSError) as exc:
                self.fallback = f"LLM unavailable, answering extractively: {exc}"
        elif engine != "extractive":
            raise ValueError(f"unknown generator engine {engine!r}")

    async def generate(self, question: str, passages: list[Passage]):
        """Yields AnswerEvents (usage, token*); the ingress reads them with ``handle.options(stream=True)``.

        The engine runs in a worker thread; when the caller goes away (client disconnect -> Serve
        cancels this call) the worker is told to stop and closes the engine's stream, which stops
        llama.cpp at its next token.
        """
        loop = asyncio.get_running_loop()
        items: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        usage: dict = {}

        def work() -> None:
            deltas = self.engine.generate(question, passages, usage)
            try:
                for delta in deltas:
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(items.put_nowait, delta)
            except BaseException as exc:  # surfaced to the caller
                loop.call_soon_threadsafe(items.put_nowait, exc)
            finally:
                deltas.close()
                loop.call_soon_threadsafe(items.put_nowait, _END)

        self.streams["active"] += 1
        completed = False
        loop.run_in_executor(None, work)
        reported = False
        try:
            while (item := await items.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                if not reported:  # the prompt is built by the first token: report it even if the stream stops early
                    yield self._usage(usage)
                    reported = True
                yield AnswerEvent("token", {"text": item})
            if not reported:
                yield self._usage(usage)
            completed = True
        finally:
            stop.set()
            self.streams["active"] -= 1
            self.streams["completed" if completed else "stopped"] += 1

    def _usage(self, usage: dict) -> AnswerEvent:
        return AnswerEvent("usage", {"tokens_in": usage.get("tokens_in", 0), "model_params": self.engine.params})

    def info(self) -> dict:
        return {"model_id": self.engine.model_id, "fallback": self.fallback, "streams": dict(self.streams)}

    def check_health(self) -> None:
        if isinstance(self.engine, ExtractiveEngine):
            list(self.engine.generate("health", [Passage(1, "x", 1, 1, "", "x")]))

