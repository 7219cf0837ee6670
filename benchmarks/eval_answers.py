"""Answer evaluation on the dev ``qa`` rows with the CPU model.

    python benchmarks/eval_answers.py [--per-repo 20] [--every 1] [--k 5] [--mode hybrid+rerank]
        [--engine llama.cpp|vllm] [--model qwen2.5-coder-1.5b] [--speculative none|ngram|draft]
        [--prompt-only | --no-example] [--max-sources 3] [--source-lines 10] [--source-tokens 330] [--tag NAME]

``--engine llama.cpp`` (the default) answers exactly as the Generator does (``LlamaEngine.prompt``:
the same prompt, worked example and citation grammar); ``--prompt-only`` drops the grammar,
``--no-example`` the worked example. ``--engine vllm`` answers through the LLM deployment of ray.serve.llm (vLLM's CPU
build here) and runs every question twice: constrained (structured outputs) and prompt-only,
``--concurrency`` at a time.

Per question: retrieve in-process from the dev indexes (``../evalindex``, see eval_retrieval.py),
stream an answer, then score: an explicit ``[n]``, a cited gold file, citation precision (cited
files that are gold), word-overlap F1 with the reference answer, sentences copied from the prompt's
worked example, refusals; the same with post-hoc attribution (an answer citing nothing is pointed at
the passages whose identifiers it uses, as the orchestrator does). Also TTFT (from the model
request; retrieval is reported apart), total time, tokens/s and prompt tokens. Besides the dev
questions it asks :data:`ABSENT`, about things the repositories do not have: a grounded answer
refuses them.
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

from codeintel.answer.citations import REFUSAL, CitationTracker, attribute, cited_sentences_regex
from codeintel.answer.extractive import Passage
from codeintel.answer.llm import SPECS
from codeintel.answer.prompt import build_prompt, example_sentences
from codeintel.config import AnswerSettings, LlamaSettings
from codeintel.retrieval.metrics import percentile
from codeintel.retrieval.searcher import Searcher

ROOT = Path(__file__).resolve().parents[1]
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]+")

# Questions about what these repositories do not contain: the answer should be a refusal.
ABSENT = {
    "pallets/flask": ["How does Flask's built-in ORM map model classes to database tables?",
                      "Where does Flask compile Jinja templates to WebAssembly?"],
    "psf/requests": ["How does requests negotiate HTTP/3 over QUIC connections?",
                     "How does the requests GraphQL client batch several queries into one POST?"],
    "pydata/xarray": ["How does xarray render 3D volumes with OpenGL shaders?",
                      "Which xarray class trains a neural network on a Dataset with backpropagation?"],
}


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
    parser.add_argument("--per-repo", type=int, default=20, help="questions per repository (their first N)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--mode", default="hybrid+rerank")
    parser.add_argument("--repos", help="comma-separated owner/name: only these repositories' questions")
    parser.add_argument("--no-absent", action="store_true", help="skip the questions about absent things")
    parser.add_argument("--engine", choices=["llama.cpp", "vllm"], default="llama.cpp")
    parser.add_argument("--model", default=LlamaSettings().model, choices=list(SPECS), help="llama.cpp's model")
    parser.add_argument("--speculative", default="none", choices=["none", "ngram", "draft"])
    parser.add_argument("--prompt-only", action="store_true", help="llama.cpp: no citation grammar, a worked example instead")
    parser.add_argument("--max-sources", type=int, default=AnswerSettings().max_sources)
    parser.add_argument("--source-lines", type=int, default=AnswerSettings().source_lines)
    parser.add_argument("--source-tokens", type=int, default=AnswerSettings().source_tokens)
    parser.add_argument("--no-example", action="store_true", help="no worked example before a constrained answer")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th of the chosen dev questions (3: the rubric sample)")
    parser.add_argument("--max-new-tokens", type=int, default=LlamaSettings().max_new_tokens)
    parser.add_argument("--concurrency", type=int, default=4, help="vllm: questions decoded together")
    parser.add_argument("--tag", help="results file suffix (default: from the options)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    rows = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line.strip()]
    by_repo: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["task"] == "qa" and (not args.repos or r["repo"] in args.repos.split(",")):
            by_repo[r["repo"]].append(r)
    chosen = [r for repo in sorted(by_repo) for r in by_repo[repo][: args.per_repo]][:: args.every]
    if not args.no_absent:
        chosen += [{"id": f"absent-{repo}-{i}", "repo": repo, "commit": by_repo[repo][0]["commit"], "query": q,
                    "gold_files": [], "absent": True} for repo in sorted(by_repo) for i, q in enumerate(ABSENT.get(repo, []))]

    retrieved = []
    searchers: dict[tuple[str, str], Searcher] = {}
    for r in chosen:
        key = (r["repo"], r["commit"])
        if key not in searchers:
            searchers[key] = Searcher(args.work / r["repo"].replace("/", "__") / r["commit"])
        t = time.perf_counter()
        hits = searchers[key].search(r["query"], k=args.k, mode=args.mode).hits
        r["retrieval_s"] = time.perf_counter() - t
        retrieved.append((r, [Passage(i, h.uri, h.start_line, h.end_line, h.symbol, h.text) for i, h in enumerate(hits, 1)]))

    shape = AnswerSettings(max_sources=args.max_sources, source_lines=args.source_lines, source_tokens=args.source_tokens,
                           worked_example=not args.no_example)
    if args.engine == "llama.cpp":
        from codeintel.answer.llm import LlamaEngine

        engine = LlamaEngine(LlamaSettings(model=args.model, speculative=args.speculative, max_new_tokens=args.max_new_tokens,
                                           cited_by_construction=not args.prompt_only), shape)
        engine.check()  # load before timing
        prompts, runs = [], []
        for n, (r, passages) in enumerate(retrieved, 1):
            prompt, grammar = engine.prompt(r["query"], passages)
            prompts.append(prompt)
            runs.append(_timed(lambda: engine.chat(prompt.messages, args.max_new_tokens, grammar)))
            print(f"[{n}/{len(retrieved)}] {r['id']}: ttft {runs[-1][1] or 0:.1f}s total {runs[-1][2]:.1f}s", file=sys.stderr, flush=True)
        variant = args.tag or "-".join([args.model.rsplit("-", 1)[-1], "prompt-only" if args.prompt_only else "grammar"]
                                       + ([args.speculative] if args.speculative != "none" else []))
        runs_by_variant = {variant: runs}
        prompts_by_variant = {variant: prompts}
    else:
        from codeintel.config import VLLMSettings
        from deployments.llm import start_llm

        engine = start_llm(VLLMSettings(max_num_seqs=args.concurrency, cpus_per_replica=2, max_new_tokens=args.max_new_tokens), "eval-answers")
        window, max_new = engine.settings.max_model_len, engine.settings.max_new_tokens
        runs_by_variant, prompts_by_variant = {}, {}
        for variant, constrained in (("vllm-constrained", True), ("vllm-prompt-only", False)):
            prompts = [build_prompt(r["query"], passages, engine.count_tokens, window, max_new, shape,
                                    example=shape.worked_example or not constrained)
                       for r, passages in retrieved]
            prompts_by_variant[variant] = prompts
            runs_by_variant[variant] = asyncio.run(_vllm_runs(engine, prompts, constrained, args.concurrency))

    stamp = time.strftime("%Y-%m-%d")
    args.out.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for variant, runs in runs_by_variant.items():
        results = [_score(r, prompt, *run) for (r, _), prompt, run in zip(retrieved, prompts_by_variant[variant], runs, strict=True)]
        summaries[variant] = _summary(results, engine.model_id, args)
        (args.out / f"answers-{stamp}-{variant}.json").write_text(json.dumps({"summary": summaries[variant], "answers": results}, indent=1) + "\n")
    names = list(summaries)
    keys = list(summaries[names[0]])
    table = "| measure | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n" + "\n".join(
        f"| {k} | " + " | ".join(str(summaries[n][k]) for n in names) + " |" for k in keys)
    command = "python " + " ".join(["benchmarks/eval_answers.py", *sys.argv[1:]])
    (args.out / f"answers-{stamp}-{names[0] if len(names) == 1 else args.engine}.md").write_text(
        f"# Answer evaluation {stamp}\n\n`{command}`\n\n{table}\n")
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
            # no source numbers: free decoding
            request = engine.request(prompt.messages, [p.n for p in prompt.passages] if constrained else [])
            start, first, deltas = time.perf_counter(), None, []
            async for chunk in engine.chat(request):
                for delta in chat_deltas(chunk):
                    first = first if first is not None else time.perf_counter() - start
                    deltas.append(delta)
            print(f"{'constrained' if constrained else 'prompt-only'}: {len(deltas)} tokens, ttft {first or 0:.1f}s", file=sys.stderr, flush=True)
            return deltas, first, time.perf_counter() - start

    return list(await asyncio.gather(*(one(p) for p in prompts)))


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?!\[)", text.strip()) if s]  # "Text. [1]" is one sentence


def _copied(answer: str) -> int:
    """Answer sentences that repeat a sentence of the worked example (>= 60 % of its words)."""
    examples = [set(_WORD.findall(e.lower())) for e in example_sentences()]
    copies = 0
    for sentence in _sentences(answer):
        words = set(_WORD.findall(sentence.lower()))
        copies += any(len(words & e) >= 0.6 * len(e) for e in examples)
    return copies


def _score(r: dict, prompt, deltas: list[str], first: float | None, seconds: float) -> dict:
    tracker = CitationTracker(prompt.passages)
    for delta in deltas:
        tracker.feed(delta)
    tracker.finish()
    answer = "".join(deltas)
    refused = answer.lstrip().startswith(REFUSAL)
    cited = {p.uri for p in tracker.cited_passages}
    attributed = {p.uri for p in ([] if tracker.cited or refused else attribute(answer, prompt.passages))}  # as the orchestrator does
    both = cited | attributed
    gold = set(r["gold_files"])
    sentences = _sentences(answer)
    numbers = [p.n for p in prompt.passages]
    return {
        "id": r["id"], "absent": r.get("absent", False), "query": r["query"], "refused": refused,
        "cites_gold": bool(cited & gold), "cited_any": bool(cited),
        "citation_precision": len(cited & gold) / len(cited) if cited else None,
        "cites_gold_with_attribution": bool(both & gold), "cited_any_with_attribution": bool(both),
        "citation_precision_with_attribution": len(both & gold) / len(both) if both else None,
        "unknown_citations": tracker.unknown, "overlap_f1": overlap_f1(answer, r.get("reference_answer", "")),
        "sentences_cited": (sum(bool(re.search(r"\[\d+\]", s)) for s in sentences) / len(sentences)) if sentences else None,
        "copied_from_example": _copied(answer),
        "matches_citation_grammar": bool(numbers) and re.fullmatch(cited_sentences_regex(numbers), answer.strip()) is not None,
        "retrieval_s": r["retrieval_s"], "prompt_tokens": prompt.prompt_tokens, "sources": len(prompt.passages),
        "tokens_out": len(deltas), "ttft_s": first, "total_s": seconds,
        "tokens_per_s": (len(deltas) - 1) / (seconds - first) if first is not None and seconds > first and len(deltas) > 1 else None,
        "answer": answer, "reference": r.get("reference_answer", ""),
        "cited": [f"{p.uri}:{p.start_line}-{p.end_line}" for p in tracker.cited_passages], "gold_files": r["gold_files"],
    }


def _summary(results: list[dict], model_id: str, args) -> dict:
    dev = [x for x in results if not x["absent"]]
    absent = [x for x in results if x["absent"]]

    def mean(key, rows=dev):
        vals = [x[key] for x in rows if x[key] is not None]
        return round(statistics.fmean(vals), 3) if vals else None

    def p(key, q):
        vals = [x[key] for x in dev if x[key] is not None]
        return round(percentile(vals, q), 2) if vals else None

    return {
        "n": len(dev), "model": model_id, "mode": args.mode, "k": args.k,
        "share_citing_anything": mean("cited_any"), "share_citing_a_gold_file": mean("cites_gold"),
        "citation_precision": mean("citation_precision"), "sentences_cited": mean("sentences_cited"),
        "copied_from_example": sum(x["copied_from_example"] for x in results),
        "share_refused": mean("refused"), "absent_n": len(absent), "absent_refused": mean("refused", absent),
        "share_matching_the_citation_grammar": mean("matches_citation_grammar"),
        "share_citing_a_gold_file_with_attribution": mean("cites_gold_with_attribution"),
        "citation_precision_with_attribution": mean("citation_precision_with_attribution"), "overlap_f1": mean("overlap_f1"),
        "unknown_citations": sum(x["unknown_citations"] for x in dev),
        "ttft_p50_s": p("ttft_s", 0.5), "ttft_p95_s": p("ttft_s", 0.95), "total_p50_s": p("total_s", 0.5), "total_p95_s": p("total_s", 0.95),
        "retrieval_p50_s": p("retrieval_s", 0.5),
        "tokens_per_s": mean("tokens_per_s"), "prompt_tokens_mean": mean("prompt_tokens"), "sources_mean": mean("sources"),
        "tokens_out_mean": mean("tokens_out"),
    }


if __name__ == "__main__":
    sys.exit(main())
