"""Reindex jobs of a served repository: one at a time, in a worker thread, polled by id.

Publishing is the index's atomic CURRENT swap; serving processes open the new version when the
first request pinned to it arrives, and requests in flight finish on the version they started on.
With an artifact store configured, the writer builds on its own disk and then publishes to the store
(whose CURRENT every node's replicas follow), pruning it by the store's policy; a writer on a fresh
node starts from the store's CURRENT.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Callable

import msgspec

from codeintel.config import StoreSettings
from codeintel.errors import CodeIntelError, IndexLockedError
from codeintel.indexing.pipeline import Indexer
from codeintel.storage.layout import IndexLayout, now_iso
from codeintel.storage.store import ArtifactStore, publish_current, seed_index

__all__ = ["ReindexJobs"]


class ReindexJobs:
    """``indexer`` makes the Indexer on the first job (its embedder loads then, not at start)."""

    def __init__(self, index_dir: str, indexer: Callable[[], Indexer] = Indexer, history: int = 20,
                 store: StoreSettings = StoreSettings()) -> None:
        self.index_dir, self.history, self.store = index_dir, history, store
        self._artifacts = ArtifactStore(store.uri) if store.uri else None  # where versions are published
        self._make_indexer = indexer
        self._indexer: Indexer | None = None
        self.jobs: dict[str, dict] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, rebuild: bool = False) -> dict:
        """Start a reindex of the indexed repository; the job's state. ``rebuild`` ignores the
        previous version (the way back from a damaged one). IndexLockedError while one runs."""
        if self._artifacts is not None:
            seed_index(Path(self.index_dir), self._artifacts)
        root = Path(IndexLayout(self.index_dir).current().read_manifest().repo.root)
        with self._lock:
            running = [j for j in self.jobs.values() if j["state"] == "running"]
            if running:
                raise IndexLockedError(f"reindex {running[0]['job_id']} is still running; poll it at /v1/reindex/{running[0]['job_id']}")
            job = {"job_id": secrets.token_hex(8), "state": "running", "path": str(root), "stage": "start", "done": 0, "total": 0,
                   "rebuild": rebuild, "summary": None, "error": None, "started_at": now_iso(), "ended_at": None}
            self.jobs[job["job_id"]] = job
            for old in list(self.jobs)[: -self.history]:
                del self.jobs[old]
                self._threads.pop(old, None)
            thread = self._threads[job["job_id"]] = threading.Thread(target=self._run, args=(job, root, rebuild), name="reindex", daemon=True)
            thread.start()  # under the lock: check() never sees a running job with an unstarted thread
        return dict(job)

    def _run(self, job: dict, root: Path, rebuild: bool) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            job.update(stage=stage, done=done, total=total)

        try:
            self._indexer = self._indexer or self._make_indexer()
            report = self._indexer.run(root, self.index_dir, rebuild=rebuild, progress=progress)
            summary = msgspec.to_builtins(report)
            summary["skipped_files"] = summary["skipped_files"][:50]
            if self._artifacts is not None:
                job.update(stage="publish")
                summary["store"] = self._artifacts.uri
                summary["version"] = publish_current(Path(self.index_dir), self._artifacts, self.store)
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

    def check(self) -> None:
        """A job still marked running whose worker thread is gone would block reindexing for good."""
        with self._lock:
            lost = [job_id for job_id, job in self.jobs.items() if job["state"] == "running" and not self._threads[job_id].is_alive()]
        if lost:
            raise RuntimeError(f"reindex {lost[0]} is marked running but its worker thread is gone")
