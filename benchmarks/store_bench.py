"""Cold start of a replica on a fresh node: pull a version from the artifact store, then open it.

    python benchmarks/store_bench.py [--index ../benchindex]

Publishes the index's current version (>= 50k chunks: serve_bench.py assembles one) to a store in a
local directory and to a real S3-compatible server (moto, on loopback), then on an empty node-local
cache times the verified pull, the open of the replicas' back ends from there (FAISS shard, Lucene,
DuckDB catalog, as Serve starts them) and their first reads. Loopback S3 measures the protocol and checksum cost, not a network's bandwidth.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from codeintel.storage.layout import IndexLayout  # noqa: E402
from report import markdown_table, write_report  # noqa: E402
from codeintel.storage.store import ArtifactStore, VersionCache  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cold_start(store: ArtifactStore, name: str, work: Path) -> dict:
    """A replica's start on a node that has never seen the version: the verified pull into the
    node's cache, then the three read-side back ends opening it from there (as Serve starts them)."""
    from codeintel.config import Settings, StoreSettings
    from codeintel.service.backends import HydratorBackend, LexicalBackend, ShardBackend

    t = time.perf_counter()
    with VersionCache(store, work / "cache").use(name):
        pulled = time.perf_counter() - t
    settings = Settings(store=StoreSettings(uri=store.uri, cache_dir=str(work / "cache")))
    t = time.perf_counter()
    backends = [ShardBackend("", settings=settings), LexicalBackend("", settings), HydratorBackend("", settings)]
    opened = time.perf_counter() - t
    t = time.perf_counter()
    for backend in backends:
        backend.check()  # each one's first real read: a probe search, a BM25 query, a catalog count
    first = time.perf_counter() - t
    for backend in backends:
        backend.pool.close()
    size = sum(p.stat().st_size for p in (work / "cache" / name).rglob("*") if p.is_file())
    return {"pull_s": round(pulled, 2), "open_s": round(opened, 2), "first_search_s": round(first, 2),
            "bytes": size, "pull_MBps": round(size / pulled / 1e6, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=ROOT.parent / "benchindex")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    paths = IndexLayout(args.index).current()
    manifest = paths.read_manifest()
    results: dict = {"chunks": manifest.chunks, "version": paths.name, "machine": f"{os.cpu_count()} cores", "stores": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stores = {"local directory": lambda: ArtifactStore(str(tmp / "store"))}
        server = None
        try:
            from moto.server import ThreadedMotoServer
            import pyarrow.fs as pafs

            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
            pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1",
                              allow_bucket_creation=True).create_dir("bench")
            stores["S3 (moto, loopback)"] = lambda: ArtifactStore(f"s3://bench/idx?endpoint_override={host}:{port}&scheme=http&region=us-east-1")
        except ImportError:
            print("moto missing: local directory only", file=sys.stderr)
        try:
            for n, (label, make) in enumerate(stores.items()):
                store = make()
                t = time.perf_counter()
                store.publish(paths.root)
                publish_s = time.perf_counter() - t
                results["stores"][label] = {"publish_s": round(publish_s, 2), **cold_start(store, paths.name, tmp / f"node{n}")}
                print(label, results["stores"][label], file=sys.stderr)
        finally:
            if server is not None:
                server.stop()
    stamp = time.strftime("%Y-%m-%d")
    lines = [f"# Cold start from the artifact store, {stamp}", "",
             f"`python benchmarks/store_bench.py`: version of {manifest.chunks} chunks, {results['machine']}; a fresh node-local cache.", ""]
    lines += markdown_table(["store", "MB", "publish s", "pull + verify s", "MB/s", "open s (shard, BM25, catalog)", "first reads s"],
                            [[label, f"{r['bytes'] / 1e6:.0f}", r["publish_s"], r["pull_s"], r["pull_MBps"], r["open_s"], r["first_search_s"]]
                             for label, r in results["stores"].items()])
    write_report(args.out, f"store-{stamp}", results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
