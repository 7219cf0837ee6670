"""Memory and time of indexing a repository of many tiny files (50,000 by default).

    python benchmarks/many_files.py [--files 50000] [--index-files 5000] [--out benchmarks/results] [--keep]

Generates a synthetic repository of --files tiny files (one small function or paragraph each, 250 per
folder) in a temporary directory outside this repository, then indexes it in separate processes so
that each measurement's peak RSS is its own:

* ``dry-run``: walk + read + chunk of every file (``codeintel index --dry-run``), at --index-files
  and at --files files;
* ``pipeline (hash embedder)``: the whole pipeline, store, FAISS and Lucene included, at both sizes,
  with the embedder replaced by a deterministic hash -> unit-vector function, because the real one
  (about 29 chunks/s on 2 cores) would take half an hour on 50k chunks (its "embed" stage is then
  the embedding cache's lookups and writes); then a re-run with nothing changed (every file is read
  again);
* ``full index (real embedder)``: the real pipeline with bge-small on the --index-files subset.

Reported per run: wall time, time per stage (the pipeline's own ``stage_seconds``), peak RSS of the
process (``getrusage``), the RSS at start (imports, model) and the peak RSS inside each stage (a
20 ms sampler of /proc/self/statm, stages placed on the time line by their recorded durations).
Writes many-files-<date>.json and .md to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

STAGES = ("walk", "chunk", "embed", "store", "dense", "lexical")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class Sampler:
    """RSS every 20 ms on a thread: (seconds since start, bytes)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self.t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self.t0, rss_bytes()))
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> int | None:
        inside = [b for t, b in self.samples if start <= t <= end]
        return max(inside) if inside else None


# -- the repository ---------------------------------------------------------------------------------
def generate(root: Path, n: int) -> None:
    """n tiny files: 80 % Python functions, 10 % JavaScript, 10 % Markdown; 250 per folder."""
    for i in range(n):
        folder = root / f"pkg{i // 250:04d}"
        if i % 250 == 0:
            folder.mkdir(parents=True)
        kind = i % 10
        if kind == 8:
            (folder / f"widget_{i}.js").write_text(f"export function renderWidget{i}(props) {{\n  return props.value + {i};\n}}\n")
        elif kind == 9:
            (folder / f"note_{i}.md").write_text(f"# Note {i}\n\nThe component number {i} stores a value and renders it.\n")
        else:
            (folder / f"module_{i}.py").write_text(
                f"def compute_value_{i}(x):\n    \"\"\"Return x shifted by {i}.\"\"\"\n    return x + {i}\n"
            )


class HashEmbedder:
    """Deterministic unit vectors from a hash of the text: the pipeline's cost without the model's."""

    def __init__(self, contract) -> None:
        import numpy as np

        self.contract = contract
        self._np = np

    def _vector(self, text: str):
        np = self._np
        seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(self.contract.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed(self, texts):
        return self._np.stack([self._vector(t) for t in texts]) if texts else self._np.zeros((0, self.contract.dim), self._np.float32)

    def embed_queries(self, queries):
        return self.embed(queries)


# -- one measured run, in its own process ----------------------------------------------------------
def run_one(kind: str, repo: Path, index: Path) -> dict:
    from codeintel.config import Settings
    from codeintel.indexing.pipeline import Indexer

    settings = Settings()
    if kind == "real":
        from codeintel.embedding import create_embedder

        embedder = create_embedder(settings.embedding, batch_size=settings.embed_batch_size)
        embedder.embed(["warm up"])  # the model load is part of the start RSS, not of a stage
    else:
        embedder = HashEmbedder(settings.embedding)
    start_rss = rss_bytes()
    sampler = Sampler()
    t = time.perf_counter()
    report = Indexer(settings, embedder=embedder).run(repo, index, dry_run=(kind == "dry-run"))
    seconds = time.perf_counter() - t
    sampler.stop()
    if kind == "dry-run":  # a dry run times only its walk; the rest of it is chunking
        report.stage_seconds["chunk"] = round(seconds - sum(report.stage_seconds.values()), 3)
    stage_peaks = {}
    clock = 0.0
    for stage in STAGES:  # the stages run in this order; their durations place them on the sampler's time line
        if stage in report.stage_seconds:
            peak = sampler.peak_between(clock, clock + report.stage_seconds[stage] + 0.02)
            clock += report.stage_seconds[stage]
            if peak is not None:
                stage_peaks[stage] = peak
    return {
        "files": report.files,
        "chunks": report.chunks if kind != "dry-run" else report.new_chunks,
        "embedded": report.embedded,
        "up_to_date": report.up_to_date,
        "skipped": report.skipped,
        "seconds": round(seconds, 2),
        "stage_seconds": report.stage_seconds,
        "start_rss_mb": round(start_rss / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "stage_peak_rss_mb": {k: round(v / 2**20, 1) for k, v in stage_peaks.items()},
    }


def measure(kind: str, repo: Path, index: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--_one", kind, str(repo), str(index)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"many_files: {kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--index-files", type=int, default=5_000, help="size of the subset indexed with the real embedder")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--stamp", default=time.strftime("%Y-%m-%d"))
    parser.add_argument("--keep", action="store_true", help="keep the generated trees and indexes")
    parser.add_argument("--_one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one:
        kind, repo, index = args._one
        print(json.dumps(run_one(kind, Path(repo), Path(index))))
        return 0

    work = Path(tempfile.mkdtemp(prefix="codeintel-many-files-"))
    runs: list[dict] = []
    try:
        sizes = sorted({args.index_files, args.files})
        trees = {}
        generate_s = {}
        for n in sizes:
            t = time.perf_counter()
            trees[n] = work / f"repo{n}"
            generate(trees[n], n)
            generate_s[n] = round(time.perf_counter() - t, 2)
            print(f"generated {n} files in {generate_s[n]} s", file=sys.stderr)
        plan = [(f"dry-run, {n} files", "dry-run", n, f"dry{n}") for n in sizes]
        for n in sizes:
            plan.append((f"pipeline (hash embedder), {n} files", "hash", n, f"hash{n}"))
            plan.append((f"re-run, nothing changed (hash embedder), {n} files", "hash", n, f"hash{n}"))
        plan.append((f"full index (real embedder), {args.index_files} files", "real", args.index_files, "real"))
        for label, kind, n, index_name in plan:
            print(f"{label} ...", file=sys.stderr)
            result = measure(kind, trees[n], work / index_name)
            result["run"] = label
            if kind != "dry-run" and (work / index_name).exists():
                result["index_mb"] = round(du(work / index_name) / 1e6, 1)
            runs.append(result)
            print(f"  {result['seconds']} s, peak RSS {result['peak_rss_mb']} MB, stages {result['stage_seconds']}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    by = {r["run"]: r for r in runs}
    small, large = min(sizes), max(sizes)
    growth = {}
    if small != large:
        for name in ("dry-run", "pipeline (hash embedder)"):
            a, b = by[f"{name}, {small} files"], by[f"{name}, {large} files"]
            growth[name] = round((b["peak_rss_mb"] - a["peak_rss_mb"]) * 2**20 / (large - small))
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "command": "python benchmarks/many_files.py " + " ".join(sys.argv[1:]),
        "files": args.files,
        "index_files": args.index_files,
        "generate_seconds": generate_s,
        "peak_rss_bytes_per_extra_file": growth,
        "runs": runs,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"many-files-{args.stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    header = "| run | files | chunks | seconds | stage seconds | start RSS MB | peak RSS MB | peak RSS per stage MB |\n|---|---|---|---|---|---|---|---|\n"
    rows = "".join(
        f"| {r['run']} | {r['files']} | {r['chunks']} | {r['seconds']} | "
        f"{', '.join(f'{k} {v}' for k, v in r['stage_seconds'].items())} | {r['start_rss_mb']} | {r['peak_rss_mb']} | "
        f"{', '.join(f'{k} {v}' for k, v in r['stage_peak_rss_mb'].items())} |\n"
        for r in runs
    )
    growth_line = "".join(f"* peak RSS per extra file, {k}: {v} bytes ({small} -> {large} files)\n" for k, v in growth.items())
    (out / f"many-files-{args.stamp}.md").write_text(
        f"# Many tiny files {args.stamp}\n\n`{result['command']}` on {result['machine']}\n\n{header}{rows}\n{growth_line}"
    )
    print(header + rows + growth_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
