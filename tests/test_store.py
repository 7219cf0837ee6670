"""The artifact store (codeintel.storage.store): real index versions through a local directory and
through a real S3-compatible server (moto's, started on loopback), pulled into node-local caches."""

from __future__ import annotations

import threading

import pytest

from codeintel.errors import StoreError, VersionGoneError
from codeintel.indexing.pipeline import Indexer
from codeintel.retrieval.searcher import Searcher
from codeintel.storage.layout import IndexLayout
from codeintel.storage.store import CHECKSUMS, ArtifactStore, VersionCache

from conftest import SMALL_REPO, write_tree


@pytest.fixture(scope="module")
def built(tmp_path_factory, real_embedder):
    """Two real versions of one index: the second after a one-file change."""
    root = tmp_path_factory.mktemp("built")
    repo = write_tree(root / "repo", SMALL_REPO)
    indexer = Indexer(embedder=real_embedder)
    indexer.run(repo, root / "idx")
    first = IndexLayout(root / "idx").current().root
    (repo / "app" / "extra.py").write_text("def parse_toml_config(path):\n    return tomllib.load(open(path, 'rb'))\n")
    indexer.run(repo, root / "idx")
    second = IndexLayout(root / "idx").current().root
    return first, second


@pytest.fixture(scope="module")
def s3_endpoint():
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    import pyarrow.fs as pafs

    pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", access_key="test", secret_key="test",
                      region="us-east-1", allow_bucket_creation=True).create_dir("codeintel")
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, monkeypatch):
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "store"))
    endpoint = request.getfixturevalue("s3_endpoint")  # one bucket for the module, a prefix per test
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")  # credentials the way a deployment passes them
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    return ArtifactStore(f"s3://codeintel/{tmp_path.name}?endpoint_override={endpoint}&scheme=http&region=us-east-1")


def test_a_published_version_is_pulled_verified_and_searchable(store, built, tmp_path, real_embedder):
    first, second = built
    assert store.current() is None and store.versions() == []
    store.publish(first)
    store.publish(second)
    assert store.versions() == sorted([first.name, second.name]) and store.current() == second.name
    cache = VersionCache(store, tmp_path / "node-cache")
    with cache.use() as local:  # the current version, on a node that never saw the writer's disk
        assert local.name == second.name and (local / CHECKSUMS).exists() is False
        index = tmp_path / "served"
        (index / "versions").mkdir(parents=True)
        (index / "versions" / local.name).symlink_to(local, target_is_directory=True)
        (index / "CURRENT").write_text(local.name + "\n")
        searcher = Searcher(index, embedder=real_embedder)
        try:
            assert searcher.search("parse a toml config file", k=3, mode="hybrid").hits[0].uri == "app/extra.py"
        finally:
            searcher.close()


def test_a_corrupt_or_missing_version_is_an_error_and_leaves_nothing_behind(store, built, tmp_path):
    first, _ = built
    store.publish(first)
    rel = "manifest.json"
    with store.fs.open_output_stream(store._path("versions", first.name, rel)) as f:
        f.write(b"{}")
    cache = VersionCache(store, tmp_path / "node-cache")
    with pytest.raises(StoreError, match="checksum mismatch for manifest.json"):
        with cache.use(first.name):
            pass
    with pytest.raises(VersionGoneError):
        with cache.use("no-such-version"):
            pass
    assert cache.cached() == [] and not any(p.is_dir() for p in (tmp_path / "node-cache").iterdir())  # lease files only


def test_cached_versions_are_evicted_least_recently_used_but_never_while_pinned(store, built, tmp_path):
    first, second = built
    store.publish(first)
    store.publish(second)
    cache = VersionCache(store, tmp_path / "node-cache", keep=1)
    with cache.use(first.name):
        with cache.use(second.name):
            assert cache.cached() == sorted([first.name, second.name]) and cache.pinned() == sorted([first.name, second.name])
        assert cache.cached() == [first.name]  # over the limit: the idle one goes, the pinned one stays
    assert cache.cached() == [first.name]
    with cache.use(second.name):  # pulled again; then the least recently used one goes
        pass
    assert cache.cached() == [second.name] and cache.pinned() == []


def test_processes_sharing_a_node_cache_never_evict_a_version_another_one_serves(store, built, tmp_path):
    first, second = built
    store.publish(first)
    store.publish(second)
    serving = VersionCache(store, tmp_path / "node-cache", keep=1)  # two replica processes, one cache dir
    other = VersionCache(store, tmp_path / "node-cache", keep=1)
    with serving.use(first.name):
        with other.use(second.name):
            pass
        # over the limit, the other process goes for its least recently used version, first, which it
        # does not know is in use here: the lease keeps it, and its own idle copy goes instead
        assert other.cached() == [first.name] and (tmp_path / "node-cache" / first.name / "manifest.json").exists()
    with other.use(second.name):  # pulled again; now first is idle everywhere and goes
        pass
    assert other.cached() == [second.name]


def test_concurrent_requests_pull_a_version_once(store, built, tmp_path):
    first, _ = built
    store.publish(first)
    cache = VersionCache(store, tmp_path / "node-cache")
    fetches = []
    real_fetch = store.fetch
    store.fetch = lambda name, target: (fetches.append(name), real_fetch(name, target))[1]
    paths = []

    def one() -> None:
        with cache.use(first.name) as path:
            paths.append(path)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fetches == [first.name] and len(set(paths)) == 1


def test_the_current_version_cannot_be_deleted_and_bad_uris_are_clear(store, built):
    first, second = built
    store.publish(first)
    store.publish(second)
    with pytest.raises(StoreError, match="is current"):
        store.delete(second.name)
    store.delete(first.name)
    assert store.versions() == [second.name]
    with pytest.raises(StoreError, match="not in the store"):
        store.set_current(first.name)
    with pytest.raises(StoreError, match="cannot open artifact store"):
        ArtifactStore("nosuchscheme://x/y")


def test_prune_keeps_current_newest_and_leased_versions_until_their_lease_goes_stale(store, built, tmp_path):
    first, second = built
    store.publish(first)
    store.publish(second)
    store.lease(first.name, "node-b-1")  # a replica on another node serves the older version
    assert store.leased(ttl_s=60) == {first.name: ["node-b-1"]}
    assert store.prune(retain=1, ttl_s=60) == [] and store.versions() == sorted([first.name, second.name])
    assert store.prune(retain=1, ttl_s=0) == [first.name]  # the same lease, stale under a zero TTL: the replica died
    assert store.versions() == [second.name] and store.leased(ttl_s=60) == {}
    store.release(second.name, "nobody")  # releasing what is not held is no error
    assert store.prune(retain=1, ttl_s=60) == [] and store.current() == second.name  # CURRENT always stays


def test_backends_serve_from_the_store_with_leases_and_follow_its_current(store, built, tmp_path):
    """Replicas on a node that never sees the writer's index: only the store and their own cache."""
    from codeintel.config import Settings, StoreSettings
    from codeintel.service.backends import HydratorBackend, LexicalBackend, ShardBackend
    from codeintel.storage.scope import Scope

    first, second = built
    store.publish(first)
    settings = Settings(store=StoreSettings(uri=store.uri, cache_dir=str(tmp_path / "node-b"), current_ttl_s=0))
    nowhere = str(tmp_path / "no-index-here")
    hydrator, lexical, shard = HydratorBackend(nowhere, settings), LexicalBackend(nowhere, settings), ShardBackend(nowhere, settings=settings)
    assert hydrator.info()["version"] == first.name and lexical.info()["docs"] > 0 and shard.info()["vectors"] > 0
    assert sorted(store.leased(60)[first.name]) == sorted({p.source.holder for p in (hydrator.pool, lexical.pool, shard.pool)})
    store.publish(second)  # a reindex elsewhere: CURRENT moves, the replicas follow
    assert hydrator.info()["version"] == second.name
    ids = hydrator.ids_in_scope(Scope(), second.name)
    assert hydrator.query_by_ids(ids[:1], Scope(), second.name)[0].id == ids[0]
    assert set(store.leased(60)) == {first.name, second.name}  # both open (keep=2) in this process
    assert not (tmp_path / "no-index-here").exists() and (tmp_path / "node-b" / second.name).is_dir()
    for backend in (hydrator, lexical, shard):  # a replica shutting down gives its leases back at once
        backend.pool.close()
    assert store.leased(60) == {}


def test_a_writer_on_a_fresh_node_starts_from_the_store_and_publishes_to_it(tmp_path, real_embedder):
    from codeintel.config import StoreSettings
    from codeintel.service.reindex import ReindexJobs
    from codeintel.storage.store import publish_current
    from test_reindex import wait

    repo = write_tree(tmp_path / "repo", SMALL_REPO)
    Indexer(embedder=real_embedder).run(repo, tmp_path / "first-writer")
    store = ArtifactStore(str(tmp_path / "store"))
    published = publish_current(tmp_path / "first-writer", store)
    (repo / "app" / "extra.py").write_text("def parse_toml_config(path):\n    return tomllib.load(open(path, 'rb'))\n")
    settings = StoreSettings(uri=store.uri)
    jobs = ReindexJobs(str(tmp_path / "second-writer"), lambda: Indexer(embedder=real_embedder), store=settings)
    job = wait(jobs, jobs.start()["job_id"])
    assert job["state"] == "done", job
    assert job["summary"]["changed_files"] == 1 and job["summary"]["embedded"] < 5  # incremental on the seeded version
    assert store.current() == job["summary"]["version"] != published and store.versions() == sorted([published, store.current()])
