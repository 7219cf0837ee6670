"""Indexing throughput: one process against Ray Data with 1 and 2 embedder actors on the same tree.

    python benchmarks/ray_index_bench.py [REPO] [--out benchmarks/results]

Each build starts cold (new index, empty embedding cache). Ray runs on this node (2 cores), so no
speed-up is expected: the figures give Ray's overhead, and the build's serial part (what the driver
does: Parquet, DuckDB, FAISS, Lucene) against its parallel part (parse + embed), from which the time
for 1M chunks on N nodes is projected. Writes JSON and a Markdown table.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from codeintel.config import Settings  # noqa: E402
from codeintel.indexing.pipeline import Indexer  # noqa: E402
from codeintel.storage.chunks import read_chunk_table  # noqa: E402
from codeintel.storage.layout import IndexLayout  # noqa: E402
from report import markdown_table, write_report  # noqa: E402

DEFAULT_REPO = Path(__file__).resolve().parents[2] / "evaltrees" / "pallets__flask" / "4c288bc97ea371817199908d0d9b12de9dae327e"
PARALLEL = ("chunk", "embed")  # the stages an executor runs; the rest is the driver's


def build(label: str, indexer: Indexer, repo: Path, work: Path) -> dict:
    t = time.perf_counter()
    report = indexer.run(repo, work / label / "index")
    seconds = time.perf_counter() - t
    stages = report.stage_seconds
    parallel = sum(stages.get(s, 0.0) for s in PARALLEL)
    ids = read_chunk_table(IndexLayout(work / label / "index").current().chunks, columns=["id"]).column("id").to_pylist()
    return {"label": label, "chunks": report.chunks, "seconds": round(seconds, 1), "chunks_per_s": round(report.chunks / seconds, 1),
            "parallel_s": round(parallel, 1), "serial_s": round(seconds - parallel, 1), "stages": stages, "ids": ids}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", nargs="?", default=str(DEFAULT_REPO))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    repo = Path(args.repo)
    if not repo.is_dir():
        print(f"ray_index_bench: no repository at {repo} (materialize the dev trees or pass a path)", file=sys.stderr)
        return 2
    import ray

    from codeintel.indexing.distributed import RayExecutor

    logging.getLogger("ray").setLevel(logging.ERROR)

    settings = Settings()
    work = Path(tempfile.mkdtemp(prefix="codeintel-raybench-"))
    # Ray first: ray.init() installs a SIGSEGV handler over the Lucene JVM's if the JVM already runs in
    # this process (HotSpot uses SIGSEGV internally); started after Ray, the JVM chains to it. Ray idles
    # during the single-process build.
    t = time.perf_counter()
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t
    runs = [build("single process", Indexer(settings, cache_path=work / "c0.duckdb"), repo, work)]
    for workers in (1, 2):
        executor = RayExecutor(settings, workers=workers)
        runs.append(build(f"Ray Data, {workers} actor{'s' if workers > 1 else ''}", Indexer(settings, cache_path=work / f"c{workers}.duckdb",
                                                                                              executor=executor), repo, work))
    ray.shutdown()
    same = all(r["ids"] == runs[0]["ids"] for r in runs)
    for r in runs:
        del r["ids"]

    # 1M chunks on N nodes: the parallel part divides by N (each node embeds at the one-actor rate
    # measured here), the driver's serial part does not.
    ray1 = runs[1]
    per_chunk_parallel = ray1["parallel_s"] / ray1["chunks"]
    per_chunk_serial = ray1["serial_s"] / ray1["chunks"]
    projection = {n: round((1e6 * per_chunk_serial + 1e6 * per_chunk_parallel / n) / 3600, 2) for n in (1, 2, 4, 8, 16)}
    result = {"repo": str(repo), "machine": f"{platform.machine()}, {os.cpu_count()} cores", "ray_start_s": round(ray_start, 1),
              "same_chunk_ids": same, "runs": runs, "projected_hours_1M_chunks_by_nodes": projection,
              "date": time.strftime("%Y-%m-%d")}
    lines = [f"# Indexing on Ray Data vs one process ({result['date']})", "",
             f"`python benchmarks/ray_index_bench.py` on {repo.parent.name}@{repo.name[:8]} ({result['machine']}, CPU embedder); cold builds "
             "(the single process also starts the Lucene JVM, the Ray builds find it started; Ray idles beside it); "
             f"Ray start {result['ray_start_s']} s (not in the builds); same chunk ids in every build: {same}.", ""]
    lines += markdown_table(["build", "chunks", "s", "chunks/s", "parse + embed s", "driver (serial) s"],
                            [[r["label"], r["chunks"], r["seconds"], r["chunks_per_s"], r["parallel_s"], r["serial_s"]] for r in runs])
    lines += ["", "Projected hours for 1M chunks by CPU nodes like this one (one actor each; the driver's part does not divide):", ""]
    lines += markdown_table(["nodes", *map(str, projection)], [["hours", *projection.values()]])
    write_report(Path(args.out), f"ray-index-{result['date']}", result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
