"""/v1/search latency and throughput through the Serve graph, next to the same search in-process.

    python benchmarks/serve_bench.py [--evalindex ../evalindex] [--index ../benchindex] [--requests 120] [--levels 1,8,32]

Needs an index of >= 100k chunks. Without one at --index, it assembles one from the per-commit dev
indexes under --evalindex (real code, real embeddings; every tree's paths prefixed by
``<repo>/<commit>/`` so the trees coexist), writing Parquet, the DuckDB catalog, FAISS and Lucene
through codeintel's own storage code. Then it measures, at concurrency 1, 8 and 32: p50/p95/p99
and QPS of POST /v1/search in the default mode (hybrid: dense, BM25 and the code graph's hints), and
the in-process Searcher on the same queries, each path after the same unmeasured warm-up (one
pass over the queries). The ratio is the cost of the graph.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from deployments import LOCAL_SERVE_ENV, use_serve_env  # noqa: E402

use_serve_env(local=True)  # as `codeintel serve` runs; RAY_SERVE_ENABLE_HA_PROXY=0 RAY_SERVE_THROUGHPUT_OPTIMIZED=0 measures Serve's default

from codeintel import __version__  # noqa: E402
from codeintel.config import DEFAULT_MODE, MODES, Settings  # noqa: E402
from codeintel.indexing.chunking import chunk_id  # noqa: E402
from codeintel.retrieval.metrics import percentile  # noqa: E402
from codeintel.storage.catalog import build_catalog  # noqa: E402
from codeintel.storage.chunks import embeddings_of, read_chunk_table, write_chunks  # noqa: E402
from codeintel.storage.graph import DEF_SCHEMA, REF_SCHEMA, load_graph_tables  # noqa: E402
from codeintel.storage.dense import DenseIndex  # noqa: E402
from codeintel.storage.layout import FORMAT_VERSION, IndexLayout, IndexManifest, RepoRecord, now_iso  # noqa: E402
from codeintel.storage.lexical import LexicalDoc, LexicalIndex  # noqa: E402
from report import markdown_table, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PORT = 18800


def prefixed(table: pa.Table, prefix: str, *columns: str) -> pa.Table:
    """``table`` with ``prefix`` before every non-empty value of ``columns`` (paths of one tree)."""
    for name in columns:
        col = table.column(name)
        joined = pc.binary_join_element_wise(pa.array([prefix] * table.num_rows, pa.string()), col, "")
        table = table.set_column(table.schema.get_field_index(name), name, pc.if_else(pc.equal(col, ""), col, joined))
    return table


def assemble(evalindex: Path, target: Path, min_chunks: int) -> int:
    settings = Settings()
    tables, files, defs, refs = [], [], [], []
    total = 0
    for current in sorted(evalindex.glob("*/*/CURRENT")):
        layout = IndexLayout(current.parent)
        paths = layout.current()
        table = read_chunk_table(paths.chunks)
        prefix = f"{current.parent.parent.name}/{current.parent.name[:10]}/"
        files.append(prefixed(pq.read_table(paths.files), prefix, "uri"))
        defs.append(prefixed(pq.read_table(paths.graph_defs, schema=DEF_SCHEMA), prefix, "uri"))
        refs.append(prefixed(pq.read_table(paths.graph_refs, schema=REF_SCHEMA), prefix, "uri", "target_uri"))
        uris = pc.binary_join_element_wise(pa.array([prefix] * table.num_rows), table.column("uri"), "").combine_chunks()
        ids = [chunk_id("bench", u, s, e, h) for u, s, e, h in zip(uris.to_pylist(), table.column("start_line").to_pylist(),
                                                                     table.column("end_line").to_pylist(), table.column("hash").to_pylist(), strict=True)]
        table = table.set_column(table.schema.get_field_index("uri"), "uri", uris)
        table = table.set_column(table.schema.get_field_index("id"), "id", pa.array(ids, pa.int64()))
        table = table.set_column(table.schema.get_field_index("repo"), "repo", pa.array(["bench"] * table.num_rows, pa.string()))
        tables.append(table)
        total += table.num_rows
        if total >= min_chunks:
            break
    with layout_lock(target) as layout:
        build = layout.new_build()
        n = write_chunks(build.chunks, tables, settings.embedding)
        build_catalog(build.chunks, build.catalog)
        table = read_chunk_table(build.chunks)
        dense = DenseIndex.build(embeddings_of(table, settings.embedding.dim), table.column("id").to_numpy(), settings.embedding, settings.dense)
        dense.save(build.dense)
        lexical = LexicalIndex(build.lexical)
        lexical.add(LexicalDoc(r["id"], r["uri"], r["symbol"], r["context"], r["text"]) for r in table.select(["id", "uri", "symbol", "context", "text"]).to_pylist())
        docs = lexical.count()
        lexical.close()
        pq.write_table(pa.concat_tables(files), build.files)
        pq.write_table(pa.concat_tables(defs), build.graph_defs)
        pq.write_table(pa.concat_tables(refs), build.graph_refs)
        load_graph_tables(build.catalog, build.graph_defs, build.graph_refs, build.files)
        build.write_manifest(IndexManifest(
            format_version=FORMAT_VERSION, codeintel_version=__version__, contract=settings.embedding,
            repo=RepoRecord(name="bench", commit=None, root=str(evalindex)), built_at=now_iso(),
            files=len(Counter(table.column("uri").to_pylist())), chunks=n, skipped={}, walk=settings.walk,
            chunking=settings.chunk, dense_type=dense.manifest.index_type, dense_primary=dense.ntotal,
            dense_secondary=0, lexical_docs=docs))
        layout.publish(build)
    return n


class layout_lock:
    def __init__(self, root: Path) -> None:
        self.layout = IndexLayout(root)
        self._cm = self.layout.lock()

    def __enter__(self) -> IndexLayout:
        self._cm.__enter__()
        return self.layout

    def __exit__(self, *exc) -> None:
        self._cm.__exit__(*exc)


def queries() -> list[str]:
    rows = [json.loads(line) for line in (ROOT.parent / "shared" / "evals" / "dev" / "dev.jsonl").read_text().splitlines()]
    return [r["query"] for r in rows]  # questions and pasted issues, as the dev set mixes them


def summarize(latencies: list[float], seconds: float) -> dict:
    return {"n": len(latencies), "p50_ms": round(percentile(latencies, 0.5), 1), "p95_ms": round(percentile(latencies, 0.95), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1), "qps": round(len(latencies) / seconds, 2),
            "mean_ms": round(statistics.fmean(latencies), 1)}


def in_process(searcher, qs: list[str], requests: int, concurrency: int, mode: str) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    latencies: list[float] = []

    def one(i: int) -> None:
        t = time.perf_counter()
        searcher.search(qs[i % len(qs)], k=10, mode=mode)
        latencies.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(requests)))
    return summarize(latencies, time.perf_counter() - start)


async def over_http(url: str, qs: list[str], requests: int, concurrency: int, mode: str) -> dict:
    import httpx

    latencies: list[float] = []
    errors: Counter = Counter()
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(i: int) -> None:
            async with sem:
                t = time.perf_counter()
                r = await client.post("/v1/search", json={"query": qs[i % len(qs)], "k": 10, "mode": mode})
                latencies.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    errors[r.status_code] += 1

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        result = summarize(latencies, time.perf_counter() - start)
    result["errors"] = dict(errors)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evalindex", type=Path, default=ROOT.parent / "evalindex")
    parser.add_argument("--index", type=Path, default=ROOT.parent / "benchindex")
    parser.add_argument("--min-chunks", type=int, default=100_000)
    parser.add_argument("--levels", default="1,8,32", help="comma-separated concurrency levels")
    parser.add_argument("--mode", default=DEFAULT_MODE, choices=MODES)
    parser.add_argument("--tag", help="results file suffix")
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=len(queries()),
                        help="searches each path runs first, unmeasured (default: one pass over the queries): "
                             "a fresh JVM spends its first hundreds of searches compiling Lucene")
    parser.add_argument("--ingress-replicas", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    if IndexLayout(args.index).current_name() is None:
        t = time.perf_counter()
        n = assemble(args.evalindex, args.index, args.min_chunks)
        print(f"assembled {n} chunks in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    manifest = IndexLayout(args.index).current().read_manifest()
    qs = queries()
    results: dict = {"mode": args.mode, "chunks": manifest.chunks, "dense_type": manifest.dense_type, "machine": f"{os.cpu_count()} cores",
               "serve_env": {name: os.environ.get(name, "") for name in LOCAL_SERVE_ENV}, "levels": {}}
    levels = [int(c) for c in args.levels.split(",")]
    from codeintel.retrieval.searcher import Searcher

    searcher = Searcher(args.index)
    in_process(searcher, qs, args.warmup, 8, args.mode)  # the same warm-up as the graph's: JIT, caches
    for c in levels:
        results["levels"].setdefault(str(c), {})["in_process"] = in_process(searcher, qs, args.requests, c, args.mode)
        print(f"in-process c={c}: {results['levels'][str(c)]['in_process']}", file=sys.stderr)
    searcher.close()

    import ray
    from ray import serve

    from deployments.app import build_app

    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": PORT})
        serve.run(build_app({"index_dir": str(args.index), "ingress_replicas": args.ingress_replicas}), name="bench", route_prefix="/")
        asyncio.run(over_http(f"http://127.0.0.1:{PORT}", qs, args.warmup, 8, args.mode))
        for c in levels:
            results["levels"][str(c)]["serve"] = asyncio.run(over_http(f"http://127.0.0.1:{PORT}", qs, args.requests, c, args.mode))
            print(f"serve c={c}: {results['levels'][str(c)]['serve']}", file=sys.stderr)
    finally:
        serve.shutdown()
        ray.shutdown()

    stamp = time.strftime("%Y-%m-%d") + (f"-{args.tag}" if args.tag else "")
    lines = [f"# /v1/search through Ray Serve vs in-process, {stamp}", "",
             f"`python benchmarks/serve_bench.py --requests {args.requests} --levels {args.levels} --mode {args.mode}`: {manifest.chunks} chunks ({manifest.dense_type}), "
             f"mode {args.mode}, k=10, {args.ingress_replicas} ingress replicas, {results['machine']}; each path first ran {args.warmup} searches unmeasured. "
             f"Serve started with {' '.join(f'{k}={v}' for k, v in results['serve_env'].items())}.", ""]
    rows = []
    for c, level in results["levels"].items():
        for path in ("in_process", "serve"):
            r = level[path]
            rows.append([c, path, r["p50_ms"], r["p95_ms"], r["p99_ms"], r["qps"], r.get("errors", {})])
        ratio = level["serve"]["p50_ms"] / max(level["in_process"]["p50_ms"], 1e-9)
        rows.append([c, "serve / in-process p50", f"{ratio:.2f}x", "", "", "", ""])
    lines += markdown_table(["concurrency", "path", "p50 ms", "p95 ms", "p99 ms", "QPS", "errors"], rows)
    write_report(args.out, f"serve-{stamp}", results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
