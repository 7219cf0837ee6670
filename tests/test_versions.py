"""Index versions held open under leases while reindexes publish, without Ray."""

from __future__ import annotations

import pytest

from codeintel.errors import VersionGoneError
from codeintel.indexing.pipeline import Indexer
from codeintel.service.backends import HydratorBackend
from codeintel.service.versions import VersionPool
from codeintel.storage.layout import IndexLayout
from codeintel.storage.scope import Scope

from conftest import SMALL_REPO, write_tree


def test_a_pinned_version_keeps_serving_while_reindexes_publish(tmp_path, real_embedder):
    repo, index = write_tree(tmp_path / "repo", SMALL_REPO), tmp_path / "idx"
    indexer = Indexer(embedder=real_embedder)
    layout = IndexLayout(index)

    def publish(n: int) -> str:
        (repo / f"app/added_{n}.py").write_text(f"def added_{n}():\n    return {n}\n")
        indexer.run(repo, index)
        return layout.current_name()

    indexer.run(repo, index)
    hydrator = HydratorBackend(str(index))
    v1 = hydrator.info()["version"]
    chunks_v1 = len(hydrator.ids_in_scope(Scope(), v1))
    v2 = publish(2)
    assert hydrator.info()["version"] == v2 and hydrator.pool.versions() == [v1, v2]
    assert len(hydrator.ids_in_scope(Scope(), v1)) == chunks_v1 < len(hydrator.ids_in_scope(Scope(), v2))
    v3 = publish(3)  # pruning would drop v1, but this replica still holds it open (leased)
    assert (index / "versions" / v1).is_dir() and len(hydrator.ids_in_scope(Scope(), v1)) == chunks_v1
    hydrator.info()  # opens v3: v1 is closed and its lease released
    assert v1 not in hydrator.pool.versions()
    publish(4)
    assert not (index / "versions" / v1).exists() and (index / "versions" / v3).is_dir()
    with pytest.raises(VersionGoneError):
        hydrator.ids_in_scope(Scope(), v1)


def test_a_retired_version_closes_when_its_last_call_ends(tmp_path, real_embedder):
    repo, index = write_tree(tmp_path / "repo", SMALL_REPO), tmp_path / "idx"
    indexer = Indexer(embedder=real_embedder)
    indexer.run(repo, index)
    closed: list[str] = []
    pool = VersionPool(str(index), lambda paths, manifest: paths.name, closed.append, keep=1)
    first = IndexLayout(index).current_name()
    with pool.use(first) as state:
        assert state == first
        (repo / "app/more.py").write_text("def more():\n    return 2\n")
        indexer.run(repo, index)
        with pool.use(None) as newer:  # opening the new version retires the old one, still in use here
            assert newer != first and closed == []
    assert closed == [first] and pool.versions() == [newer]


def test_opening_a_version_never_blocks_calls_on_an_open_one(tmp_path, real_embedder):
    """A pull from the store takes seconds: calls pinned to the version already open go on meanwhile,
    and concurrent calls for the new version wait for its one opener."""
    import threading

    repo, index = write_tree(tmp_path / "repo", SMALL_REPO), tmp_path / "idx"
    indexer = Indexer(embedder=real_embedder)
    indexer.run(repo, index)
    first = IndexLayout(index).current_name()
    gate, opening, opened = threading.Event(), threading.Event(), []

    def slow_open(paths, manifest):
        if paths.name != first:
            opening.set()
            gate.wait(30)
        opened.append(paths.name)
        return paths.name

    pool = VersionPool(str(index), slow_open)
    (repo / "app/more.py").write_text("def more():\n    return 2\n")
    indexer.run(repo, index)
    second = IndexLayout(index).current_name()
    got: list[str] = []

    def call() -> None:
        with pool.use(second) as state:
            got.append(state)

    callers = [threading.Thread(target=call) for _ in range(3)]
    for t in callers:
        t.start()
    assert opening.wait(30)  # the second version's opener is inside its (slow) open now
    with pool.use(first) as state:  # not held up by the opener of the second version
        assert state == first and got == []
    gate.set()
    for t in callers:
        t.join(30)
    assert got == [second] * 3 and opened == [first, second] and pool.versions() == [first, second]
