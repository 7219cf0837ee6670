"""Answer evaluation on the dev ``qa`` rows with the CPU model.

    python benchmarks/eval_answers.py [--limit 30] [--k 5] [--mode hybrid+rerank]

Per question: retrieve in-process from the dev indexes (``../evalindex``, see eval_retrieval.py),
stream an answer from the bundled LLM with the production prompt, then score: does the answer cite
at least one gold file, citation precision (cited files that are gold), and word-overlap F1 with the
reference answer; the same with post-hoc attribution (an answer citing nothing is pointed at the
passages whose identifiers it uses, as the orchestrator does). Also TTFT, tokens/s and prompt
tokens. Slow on CPU: use --limit.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from codeintel.answer.citations import CitationTracker, attribute
from codeintel.answer.extractive import Passage
from codeintel.answer.llm import LlamaEngine
from codeintel.answer.prompt import build_prompt
from codeintel.retrieval.metrics import percentile
from codeintel.retrieval.searcher import Searcher

ROOT = Path(__file__).resolve().parents[1]
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]+")


def overlap_f1(answer: str, reference: str) -> float:
    a, r = Counter(w.lower() for w in _WORD.findall(answer)), Counter(w.lower() for w in _WORD.findall(reference))
    common = sum((a & r).values())
    if not common:
        return 0.0
    precision, recall = common / sum(a.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jsonl", type=Path, default=ROOT.parent / "shared" / "evals" / "dev" / "dev.jsonl")
    parser.add_argument("--work", type=Path, default=ROOT.parent / "evalindex")
    parser.add_argument("--limit", type=int, default=30, help="questions, spread over the repositories")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--mode", default="hybrid+rerank")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    rows = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line.strip()]
    by_repo: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["task"] == "qa":
            by_repo[r["repo"]].append(r)
    per_repo = max(1, args.limit // max(1, len(by_repo)))
    chosen = [r for repo in sorted(by_repo) for r in by_repo[repo][:per_repo]][: args.limit]

    engine = LlamaEngine()
    engine.count_tokens("warm up")
    results = []
    searchers: dict[tuple[str, str], Searcher] = {}
    for n, r in enumerate(chosen, 1):
        key = (r["repo"], r["commit"])
        if key not in searchers:
            searchers[key] = Searcher(args.work / r["repo"].replace("/", "__") / r["commit"])
        hits = searchers[key].search(r["query"], k=args.k, mode=args.mode).hits
        passages = [Passage(i, h.uri, h.start_line, h.end_line, h.symbol, h.text) for i, h in enumerate(hits, 1)]
        prompt = build_prompt(r["query"], passages, engine.count_tokens, engine.spec.context_window, engine.spec.max_new_tokens)
        tracker = CitationTracker(prompt.passages)
        start = time.perf_counter()
        first = None
        deltas = []
        for delta in engine.chat(prompt.messages, engine.spec.max_new_tokens):
            first = first if first is not None else time.perf_counter() - start
            deltas.append(delta)
            tracker.feed(delta)
        tracker.finish()
        seconds = time.perf_counter() - start
        answer = "".join(deltas)
        cited = {p.uri for p in tracker.cited_passages}
        attributed = {p.uri for p in ([] if tracker.cited else attribute(answer, prompt.passages))}  # as the orchestrator does
        both = cited | attributed
        gold = set(r["gold_files"])
        results.append({
            "id": r["id"], "cites_gold": bool(cited & gold), "cited_any": bool(cited),
            "citation_precision": len(cited & gold) / len(cited) if cited else None,
            "cites_gold_with_attribution": bool(both & gold), "cited_any_with_attribution": bool(both),
            "citation_precision_with_attribution": len(both & gold) / len(both) if both else None,
            "unknown_citations": tracker.unknown, "overlap_f1": overlap_f1(answer, r.get("reference_answer", "")),
            "prompt_tokens": prompt.prompt_tokens, "tokens_out": len(deltas), "ttft_s": first,
            "tokens_per_s": (len(deltas) - 1) / (seconds - first) if first is not None and seconds > first and len(deltas) > 1 else None,
            "answer": answer,
        })
        print(f"[{n}/{len(chosen)}] {r['id']} cites_gold={results[-1]['cites_gold']} ttft={first or 0:.1f}s", file=sys.stderr, flush=True)

    def mean(key):
        vals = [x[key] for x in results if x[key] is not None]
        return round(statistics.fmean(vals), 3) if vals else None

    ttfts = [x["ttft_s"] for x in results if x["ttft_s"] is not None]
    summary = {
        "n": len(results), "model": engine.model_id, "mode": args.mode, "k": args.k,
        "share_citing_a_gold_file": mean("cites_gold"), "share_citing_anything": mean("cited_any"),
        "citation_precision": mean("citation_precision"),
        "share_citing_a_gold_file_with_attribution": mean("cites_gold_with_attribution"),
        "share_citing_anything_with_attribution": mean("cited_any_with_attribution"),
        "citation_precision_with_attribution": mean("citation_precision_with_attribution"), "overlap_f1": mean("overlap_f1"),
        "unknown_citations": sum(x["unknown_citations"] for x in results),
        "ttft_p50_s": round(percentile(ttfts, 0.5), 2), "ttft_p95_s": round(percentile(ttfts, 0.95), 2),
        "tokens_per_s": mean("tokens_per_s"), "prompt_tokens_mean": mean("prompt_tokens"), "tokens_out_mean": mean("tokens_out"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    (args.out / f"answers-{stamp}.json").write_text(json.dumps({"summary": summary, "answers": results}, indent=1) + "\n")
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in summary.items())
    (args.out / f"answers-{stamp}.md").write_text(f"# Answer evaluation {stamp}\n\n`python benchmarks/eval_answers.py --limit {args.limit}`\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
