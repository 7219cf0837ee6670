"""Indexing throughput on a real repository: the whole pipeline next to the embedder alone.

    python benchmarks/index_bench.py [REPO] [--out benchmarks/results]

REPO defaults to the dev-eval xarray tree (materialize it first, see ../shared/evals/dev/README.md).
Reports files, chunks, chunks/s of the full pipeline (cold: empty embedding cache), the embedder's
raw chunks/s on the same chunks, index sizes on disk, and the time to re-index after changing one
file. Writes JSON and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from codeintel.config import Settings  # noqa: E402
from codeintel.embedding import create_embedder  # noqa: E402
from codeintel.indexing.chunking import chunk_file  # noqa: E402
from codeintel.indexing.pipeline import Indexer, embed_input  # noqa: E402
from codeintel.indexing.walk import SourceFile, discover, load, repo_info  # noqa: E402
from codeintel.storage.layout import IndexLayout  # noqa: E402

DEFAULT_REPO = Path(__file__).resolve().parents[2] / "evaltrees" / "pydata__xarray" / "40119bf35c53fc222934894d842cfc07b2e264bf"


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", nargs="?", default=str(DEFAULT_REPO))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--raw-sample", type=int, default=512, help="chunks for the embedder-alone measurement")
    args = parser.parse_args()
    repo = Path(args.repo)
    if not repo.is_dir():
        print(f"index_bench: no repository at {repo} (materialize the dev trees or pass a path)", file=sys.stderr)
        return 2

    settings = Settings()
    embedder = create_embedder(settings.embedding, batch_size=settings.embed_batch_size)
    embedder.embed(["warm up"])  # model load is not throughput

    work = Path(tempfile.mkdtemp(prefix="codeintel-bench-"))
    tree = work / "repo"
    shutil.copytree(repo, tree)
    index = work / "index"
    try:
        t = time.perf_counter()
        report = Indexer(settings, embedder=embedder).run(tree, index)
        full_s = time.perf_counter() - t

        # the embedder alone on a sample of the same chunks
        info = repo_info(tree)
        chunks = []
        for c in discover(tree, settings.walk).candidates:
            f = load(c, settings.walk)
            if isinstance(f, SourceFile):
                chunks.extend(chunk_file(info.name, f.uri, f.text, f.lang, settings.chunk))
        sample = [embed_input(c) for c in chunks[: args.raw_sample]]
        t = time.perf_counter()
        embedder.embed(sample)
        raw_rate = len(sample) / (time.perf_counter() - t)

        # change one file, re-index
        target = sorted(tree.rglob("*.py"), key=lambda p: p.stat().st_size)[len(list(tree.rglob("*.py"))) // 2]
        target.write_text(target.read_text() + "\n\ndef benchmark_added_function():\n    return 'changed'\n")
        t = time.perf_counter()
        re_report = Indexer(settings, embedder=embedder).run(tree, index)
        reindex_s = time.perf_counter() - t
        t = time.perf_counter()
        noop = Indexer(settings, embedder=embedder).run(tree, index)
        noop_s = time.perf_counter() - t

        version = IndexLayout(index).current()
        sizes = {
            "chunks.parquet": du(version.chunks),
            "catalog.duckdb": du(version.catalog),
            "dense (faiss)": du(version.dense),
            "lexical (lucene)": du(version.lexical),
            "embedding cache": du(index / "cache"),
        }
        result = {
            "repo": str(repo),
            "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
            "model": settings.embedding.model_id,
            "files": report.files,
            "skipped": report.skipped,
            "chunks": report.chunks,
            "full_index_s": round(full_s, 2),
            "pipeline_chunks_per_s": round(report.chunks / full_s, 2),
            "embedder_raw_chunks_per_s": round(raw_rate, 2),
            "stage_seconds": report.stage_seconds,
            "reindex_one_file_s": round(reindex_s, 2),
            "reindex_one_file_embedded": re_report.embedded,
            "reindex_one_file_stage_seconds": re_report.stage_seconds,
            "reindex_no_change_s": round(noop_s, 2),
            "reindex_no_change_up_to_date": noop.up_to_date,
            "sizes_bytes": sizes,
            "dense_type": report.dense_type,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    (out / f"index-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("repository", result["repo"]),
        ("machine", result["machine"]),
        ("embedding model", result["model"]),
        ("files indexed / skipped", f"{result['files']} / {sum(result['skipped'].values())} {result['skipped']}"),
        ("chunks", result["chunks"]),
        ("full index (cold cache)", f"{result['full_index_s']} s"),
        ("pipeline chunks/s", result["pipeline_chunks_per_s"]),
        ("embedder alone chunks/s", result["embedder_raw_chunks_per_s"]),
        ("stage seconds", result["stage_seconds"]),
        ("re-index after changing one file", f"{result['reindex_one_file_s']} s ({result['reindex_one_file_embedded']} chunks embedded)"),
        ("re-index with no change", f"{result['reindex_no_change_s']} s (up to date: {result['reindex_no_change_up_to_date']})"),
        *[(f"size: {k}", f"{v / 1e6:.1f} MB") for k, v in sizes.items()],
    ]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"
    (out / f"index-{stamp}.md").write_text(f"# Index benchmark {stamp}\n\n`python benchmarks/index_bench.py {args.repo}`\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
