"""Reindex jobs: one at a time, polled by id, failures reported through the job; without Ray."""

from __future__ import annotations

import threading
import time

import pytest

from codeintel.errors import IndexLockedError
from codeintel.indexing.pipeline import Indexer
from codeintel.service.reindex import ReindexJobs

from conftest import SMALL_REPO, write_tree


class GatedIndexer:
    """The real Indexer, held at the start until the test opens the gate."""

    def __init__(self, inner: Indexer) -> None:
        self.inner, self.gate = inner, threading.Event()

    def run(self, *args, **kwargs):
        self.gate.wait(30)
        return self.inner.run(*args, **kwargs)


def wait(jobs: ReindexJobs, job_id: str) -> dict:
    deadline = time.time() + 60
    while (job := jobs.job(job_id))["state"] == "running" and time.time() < deadline:
        time.sleep(0.05)
    return job


def test_one_job_at_a_time_and_its_summary(tmp_path, real_embedder):
    repo = write_tree(tmp_path / "repo", SMALL_REPO)
    Indexer(embedder=real_embedder).run(repo, tmp_path / "idx")
    gated = GatedIndexer(Indexer(embedder=real_embedder))
    jobs = ReindexJobs(str(tmp_path / "idx"), lambda: gated)
    (repo / "app/new.py").write_text("def new():\n    return 1\n")
    job = jobs.start()
    assert job["state"] == "running" and job["path"] == str(repo.resolve())
    with pytest.raises(IndexLockedError, match=job["job_id"]):
        jobs.start()
    jobs.check()  # running, and its thread is alive
    assert jobs.info() == {"running": [job["job_id"]]}
    gated.gate.set()
    done = wait(jobs, job["job_id"])
    assert done["state"] == "done" and done["summary"]["changed_files"] == 1 and done["ended_at"]
    assert jobs.job("nope") is None and jobs.info() == {"running": []}


def test_a_failing_indexer_fails_the_job_not_the_process(tmp_path, real_embedder):
    Indexer(embedder=real_embedder).run(write_tree(tmp_path / "repo", SMALL_REPO), tmp_path / "idx")

    class Broken:
        def run(self, *args, **kwargs):
            raise MemoryError("out of memory while embedding")

    jobs = ReindexJobs(str(tmp_path / "idx"), Broken)
    job = wait(jobs, jobs.start()["job_id"])
    assert job["state"] == "failed" and job["error"] == "MemoryError: out of memory while embedding"
    jobs.check()
