"""Speed of the bundled CPU LLM with the production prompt: load, TTFT, prefill and decode tokens/s.

    python benchmarks/llm_speed.py

Two prompts built by ``build_prompt`` from this repository's own source (one passage, five
passages), 200 new tokens at most. Written: benchmarks/results/llm-speed-<date>.{json,md}.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import date
from pathlib import Path

from codeintel.answer.extractive import Passage
from codeintel.answer.llm import LlamaEngine
from codeintel.answer.prompt import build_prompt

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How is a new index version published atomically?"


def main() -> int:
    engine = LlamaEngine()
    t = time.perf_counter()
    engine.count_tokens("load")  # assemble the GGUF (cached), tokenizer, weights
    result: dict = {"date": date.today().isoformat(), "model": engine.model_id, "cpus": os.cpu_count(),
                    "cpu": platform.processor() or platform.machine(), "load_s": round(time.perf_counter() - t, 2)}
    lines = (ROOT / "codeintel" / "storage" / "layout.py").read_text().split("\n")
    for name, n in (("one passage", 1), ("five passages", 5)):
        passages = [Passage(i + 1, "codeintel/storage/layout.py", 1 + 60 * i, 60 * (i + 1), "", "\n".join(lines[60 * i: 60 * (i + 1)]))
                    for i in range(n)]
        prompt = build_prompt(QUESTION, passages, engine.count_tokens, engine.spec.context_window, engine.spec.max_new_tokens)
        start, first, tokens = time.perf_counter(), None, 0
        for _ in engine.chat(prompt.messages, 200):
            first = first if first is not None else time.perf_counter() - start
            tokens += 1
        total = time.perf_counter() - start
        result[name] = {"prompt_tokens": prompt.prompt_tokens, "ttft_s": round(first or total, 2),
                        "prefill_tok_s": round(prompt.prompt_tokens / (first or total), 1), "tokens_out": tokens,
                        "decode_tok_s": round((tokens - 1) / (total - first), 1) if first and tokens > 1 else None}
    out = ROOT / "benchmarks" / "results" / f"llm-speed-{result['date']}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [f"| {name} | {r['prompt_tokens']} | {r['ttft_s']} | {r['prefill_tok_s']} | {r['tokens_out']} | {r['decode_tok_s']} |"
            for name, r in result.items() if isinstance(r, dict)]
    table = "\n".join(["| prompt | prompt tokens | TTFT s | prefill tok/s | tokens out | decode tok/s |", "|---|---|---|---|---|---|", *rows])
    out.with_suffix(".md").write_text(f"# CPU LLM speed {result['date']}\n\n`python benchmarks/llm_speed.py`: {result['model']}, "
                                      f"{result['cpus']} CPUs, load {result['load_s']} s\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
