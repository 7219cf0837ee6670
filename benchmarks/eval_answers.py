"""Answer evaluation on the dev ``qa`` rows with the CPU model.

    python benchmarks/eval_answers.py [--limit 30] [--k 5] [--mode hybrid+rerank] [--engine llama.cpp|vllm]

``--engine vllm`` answers through the LLM deployment of ray.serve.llm (vLLM's CPU build here) and
runs every question twice: constrained (structured outputs: each sentence must end in ``[n]`` of a
given source) and prompt-only (the same prompt, free decoding), ``--concurrency`` at a time.

Per question: retrieve in-process from the dev indexes (``../evalindex``, see eval_retrieval.py),
stream an answer from the bundled LLM with the production prompt, then score: does the answer cite
at least one gold file, citation precision (cited files that are gold), and word-overlap F1 with the
reference answer; the same with post-hoc attribution (an answer citing nothing is pointed at the
passages whose identifiers it uses, as the orchestrator does). Also TTFT, tokens/s and prompt
tokens. Slow on CPU: use --limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from codeintel.answer.citations import CitationTracker, attribute, cited_sentences_regex
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
    parser.add_argument("--repos", help="comma-separated owner/name: only these repositories' questions")
    parser.add_argument("--engine", choices=["llama.cpp", "vllm"], default="llama.cpp")
    parser.add_argument("--concurrency", type=int, default=4, help="vllm: questions decoded together")
    parser.add_argument("--max-new-tokens", type=int, default=384, help="vllm: answer length cap")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    rows = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line.strip()]
    by_repo: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["task"] == "qa" and (not args.repos or r["repo"] in args.repos.split(",")):
            by_repo[r["repo"]].append(r)
    per_repo = max(1, args.limit // max(1, len(by_repo)))
    chosen = [r for repo in sorted(by_repo) for r in by_repo[repo][:per_repo]][: args.limit]

    retrieved = []
    searchers: dict[tuple[str, str], Searcher] = {}
    for r in chosen:
        key = (r["repo"], r["commit"])
        if key not in searchers:
            searchers[key] = Searcher(args.work / r["repo"].replace("/", "__") / r["commit"])
        hits = searchers[key].search(r["query"], k=args.k, mode=args.mode).hits
        retrieved.append((r, [Passage(i, h.uri, h.start_line, h.end_line, h.symbol, h.text) for i, h in enumerate(hits, 1)]))

    if args.engine == "llama.cpp":
        engine = LlamaEngine()
        engine.count_tokens("warm up")
        window, max_new = engine.spec.context_window, engine.spec.max_new_tokens
        prompts = [build_prompt(r["query"], passages, engine.count_tokens, window, max_new) for r, passages in retrieved]
        runs = {"llama.cpp": [_timed(lambda p=p: engine.chat(p.messages, max_new)) for p in prompts]}
    else:
        from codeintel.config import VLLMSettings
        from deployments.llm import start_llm

        engine = start_llm(VLLMSettings(max_num_seqs=args.concurrency, cpus_per_replica=2, max_new_tokens=args.max_new_tokens), "eval-answers")
        window, max_new = engine.settings.max_model_len, engine.settings.max_new_tokens
        prompts = [build_prompt(r["query"], passages, engine.count_tokens, window, max_new) for r, passages in retrieved]
        runs = {variant: asyncio.run(_vllm_runs(engine, prompts, constrained, args.concurrency))
                for variant, constrained in (("vllm constrained", True), ("vllm prompt-only", False))}

    summaries = {}
    for variant, answers in runs.items():
        results = [_score(r, prompt, *run) for (r, _), prompt, run in zip(retrieved, prompts, answers, strict=True)]
        summaries[variant] = _summary(results, engine.model_id, args)
        stamp = time.strftime("%Y-%m-%d")
        suffix = "" if variant == "llama.cpp" else "-" + variant.replace(" ", "-")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"answers-{stamp}{suffix}.json").write_text(json.dumps({"summary": summaries[variant], "answers": results}, indent=1) + "\n")
    names = list(summaries)
    keys = list(summaries[names[0]])
    table = "| measure | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n" + "\n".join(
        f"| {k} | " + " | ".join(str(summaries[n][k]) for n in names) + " |" for k in keys)
    command = f"python benchmarks/eval_answers.py --limit {args.limit} --k {args.k} --mode {args.mode} --engine {args.engine}" + (
        f" --repos {args.repos}" if args.repos else "") + (f" --max-new-tokens {args.max_new_tokens}" if args.engine == "vllm" else "")
    (args.out / f"answers-{time.strftime('%Y-%m-%d')}{'' if args.engine == 'llama.cpp' else '-vllm'}.md").write_text(
        f"# Answer evaluation {time.strftime('%Y-%m-%d')}\n\n`{command}`\n\n{table}\n")
    print(table)
    return 0


def _timed(make_deltas) -> tuple[list[str], float | None, float]:
    start, first, deltas = time.perf_counter(), None, []
    for delta in make_deltas():
        first = first if first is not None else time.perf_counter() - start
        deltas.append(delta)
    return deltas, first, time.perf_counter() - start


async def _vllm_runs(engine, prompts, constrained: bool, concurrency: int) -> list[tuple[list[str], float | None, float]]:
    from codeintel.answer.vllm_engine import chat_deltas

    gate = asyncio.Semaphore(concurrency)

    async def one(prompt):
        async with gate:
            request = engine.request(prompt.messages, len(prompt.passages) if constrained else 0)  # 0 sources: free decoding
            start, first, deltas = time.perf_counter(), None, []
            async for chunk in engine.chat(request):
                for delta in chat_deltas(chunk):
                    first = first if first is not None else time.perf_counter() - start
                    deltas.append(delta)
            print(f"{'constrained' if constrained else 'prompt-only'}: {len(deltas)} tokens, ttft {first or 0:.1f}s", file=sys.stderr, flush=True)
            return deltas, first, time.perf_counter() - start

    return list(await asyncio.gather(*(one(p) for p in prompts)))


def _score(r: dict, prompt, deltas: list[str], first: float | None, seconds: float) -> dict:
    tracker = CitationTracker(prompt.passages)
    for delta in deltas:
        tracker.feed(delta)
    tracker.finish()
    answer = "".join(deltas)
    cited = {p.uri for p in tracker.cited_passages}
    attributed = {p.uri for p in ([] if tracker.cited else attribute(answer, prompt.passages))}  # as the orchestrator does
    both = cited | attributed
    gold = set(r["gold_files"])
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", answer.strip()) if s]
    return {
        "id": r["id"], "cites_gold": bool(cited & gold), "cited_any": bool(cited),
        "citation_precision": len(cited & gold) / len(cited) if cited else None,
        "cites_gold_with_attribution": bool(both & gold), "cited_any_with_attribution": bool(both),
        "citation_precision_with_attribution": len(both & gold) / len(both) if both else None,
        "unknown_citations": tracker.unknown, "overlap_f1": overlap_f1(answer, r.get("reference_answer", "")),
        "sentences_cited": (sum(bool(re.search(r"\[\d+\]", s)) for s in sentences) / len(sentences)) if sentences else None,
        "matches_citation_grammar": bool(prompt.passages) and re.fullmatch(cited_sentences_regex(len(prompt.passages)), answer.strip()) is not None,
        "prompt_tokens": prompt.prompt_tokens, "tokens_out": len(deltas), "ttft_s": first,
        "tokens_per_s": (len(deltas) - 1) / (seconds - first) if first is not None and seconds > first and len(deltas) > 1 else None,
        "answer": answer,
    }


def _summary(results: list[dict], model_id: str, args) -> dict:
    def mean(key):
        vals = [x[key] for x in results if x[key] is not None]
        return round(statistics.fmean(vals), 3) if vals else None

    ttfts = [x["ttft_s"] for x in results if x["ttft_s"] is not None]
    return {
        "n": len(results), "model": model_id, "mode": args.mode, "k": args.k,
        "share_citing_a_gold_file": mean("cites_gold"), "share_citing_anything": mean("cited_any"),
        "citation_precision": mean("citation_precision"), "sentences_cited": mean("sentences_cited"),
        "share_matching_the_citation_grammar": mean("matches_citation_grammar"),
        "share_citing_a_gold_file_with_attribution": mean("cites_gold_with_attribution"),
        "share_citing_anything_with_attribution": mean("cited_any_with_attribution"),
        "citation_precision_with_attribution": mean("citation_precision_with_attribution"), "overlap_f1": mean("overlap_f1"),
        "unknown_citations": sum(x["unknown_citations"] for x in results),
        "ttft_p50_s": round(percentile(ttfts, 0.5), 2), "ttft_p95_s": round(percentile(ttfts, 0.95), 2),
        "tokens_per_s": mean("tokens_per_s"), "prompt_tokens_mean": mean("prompt_tokens"), "tokens_out_mean": mean("tokens_out"),
    }


if __name__ == "__main__":
    sys.exit(main())
