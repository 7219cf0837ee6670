"""Retrieval evaluation on a benchmark JSONL (the format of ../shared/evals/dev/dev.jsonl).

    python benchmarks/eval_retrieval.py --jsonl ../shared/evals/dev/dev.jsonl --trees ../evaltrees \
        [--work ../evalindex] [--modes bm25,dense,hybrid,hybrid+rerank] [--limit N] [--repo owner/name] [--task qa]

Trees come from the dev set's materialize.py (``<trees>/<owner>__<name>/<commit>/``). Every
(repo, commit) is indexed once under --work with one embedding cache shared by all trees, so
the many commits of one repository embed each distinct chunk once. Per task it reports file
Recall@1/5/10, Acc@1, MRR, nDCG@10, chunk hit@10 against gold_spans and p50/p95 latency per
stage, as JSON, a Markdown table and a PNG bar chart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import msgspec

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from codeintel.config import MODES, Settings  # noqa: E402
from codeintel.embedding import create_embedder  # noqa: E402
from codeintel.indexing.pipeline import Indexer  # noqa: E402
from codeintel.retrieval.metrics import chunk_hit, file_metrics, percentile  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_rows(path: Path, task: str | None, repo: str | None, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if (task is None or r["task"] == task) and (repo is None or r["repo"] == repo)]
    if limit:
        # keep the mix of tasks and repositories: take the first `limit` of each (task, repo)
        seen: dict[tuple[str, str], int] = defaultdict(int)
        kept = []
        for r in rows:
            key = (r["task"], r["repo"])
            if seen[key] < limit:
                seen[key] += 1
                kept.append(r)
        rows = kept
    return rows


def tree_dir(trees: Path, repo: str, commit: str) -> Path:
    return trees / repo.replace("/", "__") / commit


def index_dir(work: Path, repo: str, commit: str) -> Path:
    return work / repo.replace("/", "__") / commit


def build_indexes(rows: list[dict], trees: Path, work: Path, settings: Settings, embedder) -> dict:
    pairs = sorted({(r["repo"], r["commit"]) for r in rows})
    indexer = Indexer(settings, embedder=embedder, cache_path=work / "embeddings.duckdb")
    stats = {"trees": len(pairs), "embedded": 0, "reused": 0, "seconds": 0.0}
    for n, (repo, commit) in enumerate(pairs, 1):
        src = tree_dir(trees, repo, commit)
        if not src.is_dir():
            raise SystemExit(f"missing tree {src}: run ../shared/evals/dev/materialize.py first")
        t = time.perf_counter()
        report = indexer.run(src, index_dir(work, repo, commit))
        dt = time.perf_counter() - t
        stats["embedded"] += report.embedded
        stats["reused"] += report.reused_embeddings
        stats["seconds"] += dt
        state = "up to date" if report.up_to_date else f"{report.chunks} chunks, {report.embedded} embedded"
        print(f"[index {n}/{len(pairs)}] {repo}@{commit[:10]}: {state} ({dt:.1f} s)", file=sys.stderr, flush=True)
    return stats


DEPTH = 50  # chunks retrieved per query; files are ranked by first appearance among them


def evaluate(rows: list[dict], work: Path, modes: list[str], settings: Settings, embedder, reranker_name: str) -> dict:
    from codeintel.retrieval.searcher import Searcher

    from codeintel.rerank import OnnxLateInteraction, create_reranker

    # one model for all trees
    reranker = OnnxLateInteraction() if reranker_name == "late-interaction" else create_reranker()
    per_query: list[dict] = []
    by_pair: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        by_pair[(r["repo"], r["commit"])].append(r)
    done = 0
    for (repo, commit), pair_rows in sorted(by_pair.items()):
        searcher = Searcher(index_dir(work, repo, commit), settings, embedder=embedder, reranker=reranker)
        try:
            for r in pair_rows:
                gold = set(r["gold_files"])
                for mode in modes:
                    result = searcher.search(r["query"], k=DEPTH, mode=mode)
                    files = [f.uri for f in result.files]
                    per_query.append(
                        {
                            "id": r["id"], "task": r["task"], "repo": repo, "mode": mode,
                            **file_metrics(files, gold),
                            "chunk_hit@10": chunk_hit(result.hits, r.get("gold_spans") or []),
                            "timings_ms": result.timings_ms,
                            "top_files": files[:5],
                        }
                    )
                done += 1
                print(f"[eval {done}/{len(rows)}] {r['id']}", file=sys.stderr, flush=True)
        finally:
            searcher.close()
    return summarize(per_query, modes), per_query


METRICS = ("R@1", "R@5", "R@10", "Acc@1", "MRR", "nDCG@10", "chunk_hit@10")


def summarize(per_query: list[dict], modes: list[str]) -> dict:
    summary: dict = {}
    for task in sorted({q["task"] for q in per_query}):
        summary[task] = {}
        for mode in modes:
            qs = [q for q in per_query if q["task"] == task and q["mode"] == mode]
            if not qs:
                continue
            row = {"n": len(qs)}
            for m in METRICS:
                vals = [q[m] for q in qs if q[m] is not None]
                row[m] = round(statistics.fmean(vals), 4) if vals else None
            stages = sorted({s for q in qs for s in q["timings_ms"]})
            row["latency_ms"] = {
                s: {"p50": round(percentile([q["timings_ms"][s] for q in qs if s in q["timings_ms"]], 0.5), 1),
                    "p95": round(percentile([q["timings_ms"][s] for q in qs if s in q["timings_ms"]], 0.95), 1)}
                for s in stages
            }
            summary[task][mode] = row
    return summary


def write_outputs(summary: dict, per_query: list[dict], out: Path, command: str, index_stats: dict, tag: str | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d") + (f"-{tag}" if tag else "")
    (out / f"retrieval-{stamp}.json").write_text(json.dumps({"command": command, "index": index_stats, "summary": summary, "queries": per_query}, indent=1) + "\n")
    lines = [f"# Retrieval evaluation {stamp}", "", f"`{command}`", ""]
    for task, modes in summary.items():
        lines += [f"## {task}", "", "| mode | n | " + " | ".join(METRICS) + " | total p50 ms | total p95 ms |", "|---" * (len(METRICS) + 4) + "|"]
        for mode, row in modes.items():
            vals = " | ".join("" if row[m] is None else f"{row[m]:.3f}" for m in METRICS)
            total = row["latency_ms"].get("total", {"p50": 0, "p95": 0})
            lines.append(f"| {mode} | {row['n']} | {vals} | {total['p50']:.0f} | {total['p95']:.0f} |")
        lines.append("")
        stage_names = sorted({s for row in modes.values() for s in row["latency_ms"]} - {"total"})
        lines += ["| mode | " + " | ".join(f"{s} p50/p95" for s in stage_names) + " |", "|---" * (len(stage_names) + 1) + "|"]
        for mode, row in modes.items():
            cells = " | ".join(
                f"{row['latency_ms'][s]['p50']:.0f}/{row['latency_ms'][s]['p95']:.0f}" if s in row["latency_ms"] else "" for s in stage_names
            )
            lines.append(f"| {mode} | {cells} |")
        lines.append("")
    (out / f"retrieval-{stamp}.md").write_text("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no PNG", file=sys.stderr)
        return
    tasks = list(summary)
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        modes = list(summary[task])
        shown = ("R@1", "R@5", "R@10", "MRR", "nDCG@10")
        width = 0.8 / len(modes)
        for n, mode in enumerate(modes):
            ax.bar([i + n * width for i in range(len(shown))], [summary[task][mode][m] or 0 for m in shown], width, label=mode)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(shown))], shown)
        ax.set_ylim(0, 1)
        ax.set_title(f"{task} (n={summary[task][modes[0]]['n']})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"retrieval-{stamp}.png", dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jsonl", type=Path, default=ROOT.parent / "shared" / "evals" / "dev" / "dev.jsonl")
    parser.add_argument("--trees", type=Path, default=ROOT.parent / "evaltrees")
    parser.add_argument("--work", type=Path, default=ROOT.parent / "evalindex")
    parser.add_argument("--task", choices=["qa", "issue_loc"])
    parser.add_argument("--repo")
    parser.add_argument("--limit", type=int, help="at most N rows per (task, repo)")
    parser.add_argument("--index-only", action="store_true")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--rerank-depth", type=int, help="chunks re-scored by the cross-encoder (default: the searcher's)")
    parser.add_argument("--rerank-weight", type=float, help="weight of the cross-encoder's order in the final fusion")
    parser.add_argument("--symbol-hits", type=int, help="definitions of the query's names fused into hybrid (0: no symbol retriever)")
    parser.add_argument("--expand-from", type=int, help="top fused chunks whose callees are fused into hybrid (0: no graph expansion)")
    parser.add_argument("--reranker", choices=["cross-encoder", "late-interaction"], default="cross-encoder",
                        help="what hybrid+rerank re-scores with")
    parser.add_argument("--import-prior", type=float, help="weight of the file prior from imports (0: none); before it was "
                        "built into the search (2026-12-03 import-prior-* results) this re-ordered result files afterwards")
    parser.add_argument("--tag", help="results file suffix")
    args = parser.parse_args()

    search = {k: v for k, v in {"rerank_depth": args.rerank_depth, "rerank_weight": args.rerank_weight,
              "symbol_hits": args.symbol_hits, "expand_from": args.expand_from, "import_prior": args.import_prior}.items()
              if v is not None}
    settings = Settings(search=msgspec.structs.replace(Settings().search, **search))
    embedder = create_embedder(settings.embedding, batch_size=settings.embed_batch_size)
    rows = load_rows(args.jsonl, args.task, args.repo, args.limit)
    stats = build_indexes(rows, args.trees, args.work, settings, embedder)
    print(json.dumps(stats), file=sys.stderr)
    if args.index_only:
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    summary, per_query = evaluate(rows, args.work, modes, settings, embedder, args.reranker)
    command = "python benchmarks/eval_retrieval.py " + " ".join(sys.argv[1:])
    write_outputs(summary, per_query, args.out, command, stats, args.tag)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
