"""Two Ray nodes on loopback that share nothing but the artifact store (``make test-cluster``).

The head node holds the repository, the writer's index directory and every deployment but the FAISS
shards; the second node (its own ``--temp-dir`` and ``HOME``, so its own version cache) runs only the
shards, pinned there by a custom resource, and reads versions only from S3 (moto's server on
loopback). The test reindexes while serving, then kills the second node's raylet under load and
starts a fresh node in its place.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from conftest import SMALL_REPO, write_tree
from deployments import LOCAL_SERVE_ENV

pytestmark = pytest.mark.cluster

RAY = str(Path(sys.executable).with_name("ray"))
QUERY = {"query": "freshly_reindexed_marker configure logging", "k": 5, "mode": "hybrid"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env, self.gcs = root, env, f"127.0.0.1:{_free_port()}"
        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
        self.shard_nodes = 0

    def ray(self, *args: str, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([RAY, *args], env={**self.env, "HOME": str(home)}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"ray {args[0]} failed: {done.stderr[-2000:]}"

    def start_head(self) -> None:
        self.ray("start", "--head", f"--port={self.gcs.split(':')[1]}", "--num-cpus=8", "--include-dashboard=false",
                 f"--temp-dir={self.temp / 'head'}", "--disable-usage-stats", home=self.root / "home-head")

    def start_shard_node(self) -> Path:
        """A fresh node for the shards: its own temp dir and HOME (its cache: ~/.cache/codeintel/versions)."""
        self.shard_nodes += 1
        home = self.root / f"home-shards-{self.shard_nodes}"
        self.ray("start", f"--address={self.gcs}", "--num-cpus=1", '--resources={"shard_node": 2}',
                 f"--temp-dir={self.temp / f'shards-{self.shard_nodes}'}", home=home)
        return home / ".cache" / "codeintel" / "versions"

    def kill_shard_node(self) -> None:
        marker = str(self.temp / f"shards-{self.shard_nodes}") + "/"
        raylets = [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "raylet" and marker in " ".join(p.info["cmdline"] or [])]
        assert len(raylets) == 1, raylets
        raylets[0].kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, real_embedder):
    moto_server = pytest.importorskip("moto.server")
    import pyarrow.fs as pafs
    import ray
    from ray import serve

    from codeintel.config import SearchSettings, Settings, StoreSettings
    from codeintel.indexing.pipeline import Indexer
    from codeintel.storage.store import ArtifactStore, publish_current
    from deployments.app import AppArgs, build_graph

    root = tmp_path_factory.mktemp("cluster")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request log
    s3 = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    os.environ.update(creds)
    pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1", allow_bucket_creation=True).create_dir("codeintel")
    uri = f"s3://codeintel/versions?endpoint_override={host}:{port}&scheme=http&region=us-east-1"

    repo = write_tree(root / "repo", SMALL_REPO)
    Indexer(embedder=real_embedder).run(repo, root / "writer-index")
    store = ArtifactStore(uri)
    first = publish_current(root / "writer-index", store)

    env = {**os.environ, **creds, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", **LOCAL_SERVE_ENV}
    env.pop("RAY_ADDRESS", None)
    nodes = Cluster(root, env)
    http_port = _free_port()
    try:
        nodes.start_head()
        shard_cache = nodes.start_shard_node()
        ray.init(address=nodes.gcs, log_to_driver=False)
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": http_port})
        settings = Settings(store=StoreSettings(uri=uri, current_ttl_s=0.5), search=SearchSettings(retriever_timeout_s=10))
        args = AppArgs(index_dir=str(root / "writer-index"), num_shards=2, shard_resources={"shard_node": 1}, settings=settings)
        serve.run(build_graph(args), name="cluster", route_prefix="/")
        yield {"url": f"http://127.0.0.1:{http_port}", "nodes": nodes, "store": store, "first": first, "repo": repo,
               "shard_cache": shard_cache, "head_cache": root / "home-head" / ".cache" / "codeintel" / "versions"}
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
            shutil.rmtree(nodes.temp, ignore_errors=True)
            s3.stop()


def _search_load(url: str, outcomes: list, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=60) as c:
        while not stop.is_set():
            r = c.post("/v1/search", json=QUERY)
            body = r.json()
            skipped = body.get("skipped_retrievers") or {}
            outcomes.append((r.status_code, body.get("version"), [h["uri"] for h in body.get("hits", [])], sorted(skipped), skipped))


def _loaded(url: str, during) -> list:
    outcomes: list = []
    stop = threading.Event()
    threads = [threading.Thread(target=_search_load, args=(url, outcomes, stop)) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        during(outcomes)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return outcomes


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_shards_on_another_node_serve_from_the_store_through_a_reindex_and_a_node_loss(cluster):
    url, nodes, store = cluster["url"], cluster["nodes"], cluster["store"]
    client = httpx.Client(base_url=url, timeout=60)
    _wait(lambda: client.get("/readyz").status_code == 200, 180, "the graph to be ready")
    r = client.post("/v1/search", json=QUERY)
    assert r.status_code == 200 and r.json()["version"] == cluster["first"] and not r.json().get("skipped_retrievers")
    # the shard node pulled the version from the store into its own cache; it has no index directory
    assert (cluster["shard_cache"] / cluster["first"] / "manifest.json").is_file()
    assert (cluster["head_cache"] / cluster["first"] / "manifest.json").is_file()  # BM25 and the catalog read the store too
    assert len(store.leased(60)[cluster["first"]]) >= 4  # 2 shards there, hydrator and BM25 here

    # 1. reindex while serving: the writer (head) builds, publishes to the store; every node follows
    (cluster["repo"] / "app" / "reindexed_module.py").write_text("def freshly_reindexed_marker():\n    return 'new'\n")
    job: dict = {}

    def reindex(outcomes: list) -> None:
        r = client.post("/v1/reindex", json={})
        assert r.status_code == 202, r.text
        job.update(_wait(lambda: (j := client.get(f"/v1/reindex/{r.json()['job_id']}").json())["state"] != "running" and j, 180, "the reindex"))
        time.sleep(2)  # queries keep running on the new version

    outcomes = _loaded(url, reindex)
    assert job["state"] == "done", job
    second = job["summary"]["version"]
    assert store.current() == second != cluster["first"] and job["summary"]["store"] == store.uri
    assert outcomes and all(o[0] == 200 for o in outcomes), {o[0] for o in outcomes}
    assert {o[1] for o in outcomes} <= {cluster["first"], second} and outcomes[-1][1] == second
    for _, version, uris, *_ in outcomes:  # never mixed: the new file only with the new version
        assert ("app/reindexed_module.py" in uris) <= (version == second)
    assert "app/reindexed_module.py" in outcomes[-1][2]
    assert (cluster["shard_cache"] / second / "manifest.json").is_file()

    # 2. the shard node's raylet dies under load: searches degrade (BM25 alone), readiness says why;
    # a fresh node takes its place, pulls the current version from the store, and dense search is back
    def lose_the_node(outcomes: list) -> None:
        time.sleep(1)
        nodes.kill_shard_node()
        _wait(lambda: any(o[3] for o in outcomes[-4:]), 120, "searches to degrade")
        down = client.get("/readyz")
        assert down.status_code == 503 and "a FAISS shard is unavailable" in down.json()["reasons"], down.text
        fresh = nodes.start_shard_node()
        _wait(lambda: client.get("/readyz").status_code == 200, 240, "the graph to recover on the fresh node")
        _wait(lambda: len(outcomes) > 4 and not any(o[3] for o in outcomes[-4:]), 60, "full searches again")
        assert (fresh / second / "manifest.json").is_file()  # a cold start: pulled into the new node's cache

    outcomes = _loaded(url, lose_the_node)
    assert all(o[0] == 200 for o in outcomes), [o for o in outcomes if o[0] != 200]  # degraded, never failed
    # while the shards were gone, dense search timed out and BM25 still answered (on 2 cores the node's
    # restart may starve another retriever past its timeout too: that is degrading, not failing)
    degraded = [o for o in outcomes if o[3]]
    assert any("dense" in o[3] for o in degraded) and all(o[2] for o in degraded), [o[4] for o in degraded]
    assert outcomes[-1][1] == second and not outcomes[-1][3]
