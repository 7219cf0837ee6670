"""vLLM's CPU build against llama.cpp, one run, one model, the production prompt.

    python benchmarks/llm_speed.py [--engines llama.cpp,vllm] [--concurrency 1,4,8] [--max-tokens 64]

Both engines serve Qwen2.5-Coder-0.5B-Instruct: llama.cpp the bundled Q4_K_M GGUF in this process
(what ``generator = "llm"`` runs), vLLM the same weights dequantized to bfloat16 as the ``LLM``
deployment of ray.serve.llm, read through its Serve handle (what ``generator = "vllm"`` runs).
Prompts are built by ``build_prompt`` from this repository's source. Per engine: load time, TTFT
and decode speed for a one-passage and a five-passage prompt, then ``c`` concurrent requests of the
one-passage prompt for each concurrency: TTFT p50/p95 (queueing included) and throughput in tokens/s
(continuous batching is vLLM's case; llama.cpp here decodes one request at a time).
Written: benchmarks/results/llm-speed-<date>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import threading
import time
from datetime import date
from pathlib import Path

from codeintel.answer.extractive import Passage
from codeintel.answer.prompt import build_prompt
from codeintel.config import AnswerSettings

WHOLE = AnswerSettings(max_sources=5, source_lines=0, source_tokens=0)  # whole chunks: engine speed, not prompt shaping

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How is a new index version published atomically?"


def _prompts(count_tokens, window: int, max_new: int) -> dict[str, list[dict]]:
    lines = (ROOT / "codeintel" / "storage" / "layout.py").read_text().split("\n")  # whole 60-line passages, as measured before
    prompts = {}
    for name, n in (("one passage", 1), ("five passages", 5)):
        passages = [Passage(i + 1, "codeintel/storage/layout.py", 1 + 60 * i, 60 * (i + 1), "", "\n".join(lines[60 * i: 60 * (i + 1)]))
                    for i in range(n)]
        prompt = build_prompt(QUESTION, passages, count_tokens, window, max_new, WHOLE)
        prompts[name] = {"messages": prompt.messages, "tokens": prompt.prompt_tokens}
    return prompts


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 2)


def _summary(runs: list[dict], wall: float) -> dict:
    tokens = sum(r["tokens"] for r in runs)
    decode = [(r["tokens"] - 1) / (r["total"] - r["ttft"]) for r in runs if r["tokens"] > 1 and r["total"] > r["ttft"]]
    return {"ttft_p50_s": _pct([r["ttft"] for r in runs], 0.5), "ttft_p95_s": _pct([r["ttft"] for r in runs], 0.95),
            "decode_tok_s": round(statistics.median(decode), 1) if decode else None,
            "tokens_out": tokens, "throughput_tok_s": round(tokens / wall, 1), "wall_s": round(wall, 1)}


class LlamaCpp:
    name = "llama.cpp"

    def load(self):
        from codeintel.answer.llm import LlamaEngine
        from codeintel.config import LlamaSettings

        self.engine = LlamaEngine(LlamaSettings(model="qwen2.5-coder-0.5b"))  # the model vLLM's "bundled" converts
        self.engine.count_tokens("load")  # GGUF (cached), tokenizer, weights
        self.count_tokens, self.window = self.engine.count_tokens, self.engine.settings.context_window

    def run(self, messages: list[dict], concurrency: int, max_tokens: int) -> tuple[list[dict], float]:
        runs: list[dict] = []

        def one() -> None:
            start, first, tokens = time.perf_counter(), None, 0
            for _ in self.engine.chat(messages, max_tokens):
                first = first if first is not None else time.perf_counter() - start
                tokens += 1
            runs.append({"ttft": first or 0.0, "total": time.perf_counter() - start, "tokens": tokens})

        t = time.perf_counter()
        threads = [threading.Thread(target=one) for _ in range(concurrency)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return runs, time.perf_counter() - t

    def close(self):
        pass


class VLLMServe:
    name = "vllm-cpu"

    def __init__(self, max_num_seqs: int) -> None:
        from codeintel.config import VLLMSettings

        # cpus_per_replica: every core this box has (llama.cpp, in this process, uses all of them too)
        self.settings = VLLMSettings(max_num_seqs=max_num_seqs, cpus_per_replica=os.cpu_count() or 1, cited_by_construction=False)

    def load(self):
        from deployments.llm import start_llm

        self.engine = start_llm(self.settings, "llm-speed")
        self.count_tokens, self.window = self.engine.count_tokens, self.settings.max_model_len

    def run(self, messages: list[dict], concurrency: int, max_tokens: int) -> tuple[list[dict], float]:
        from codeintel.answer.vllm_engine import chat_deltas

        async def one() -> dict:
            start, first, tokens = time.perf_counter(), None, 0
            request = self.engine.request(messages, [], max_tokens)
            async for chunk in self.engine.chat(request):
                for _ in chat_deltas(chunk):
                    first = first if first is not None else time.perf_counter() - start
                    tokens += 1
            return {"ttft": first or 0.0, "total": time.perf_counter() - start, "tokens": tokens}

        async def many():
            t = time.perf_counter()
            runs = await asyncio.gather(*(one() for _ in range(concurrency)))
            return list(runs), time.perf_counter() - t

        return asyncio.run(many())

    def close(self):
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def bench(engine, concurrency: list[int], max_tokens: int) -> dict:
    t = time.perf_counter()
    engine.load()
    result: dict = {"load_s": round(time.perf_counter() - t, 1)}
    prompts = _prompts(engine.count_tokens, engine.window, max_tokens)
    engine.run(prompts["one passage"]["messages"], 1, 4)  # warm-up: first-request costs are not TTFT
    for name, prompt in prompts.items():
        runs, wall = engine.run(prompt["messages"], 1, max_tokens)
        result[name] = {"prompt_tokens": prompt["tokens"], **_summary(runs, wall)}
        print(engine.name, name, result[name], flush=True)
    result["concurrency"] = {}
    for c in concurrency:
        runs, wall = engine.run(prompts["one passage"]["messages"], c, max_tokens)
        result["concurrency"][str(c)] = _summary(runs, wall)
        print(engine.name, f"c={c}", result["concurrency"][str(c)], flush=True)
    engine.close()
    return result


def _write(result: dict, out: Path) -> None:
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# LLM speed {result['date']}: vLLM CPU vs llama.cpp", "",
             f"`{result['command']}` on {result['cpus']} CPUs ({result['cpu']}); model {result['model']}; "
             f"{result['max_tokens']} new tokens at most, temperature 0.1.", "",
             "| engine | load s | prompt | prompt tokens | TTFT s | decode tok/s |", "|---|---|---|---|---|---|"]
    for name, r in result["engines"].items():
        for prompt in ("one passage", "five passages"):
            p = r[prompt]
            lines.append(f"| {name} | {r['load_s']} | {prompt} | {p['prompt_tokens']} | {p['ttft_p50_s']} | {p['decode_tok_s']} |")
    lines += ["", "Concurrent requests (one-passage prompt): TTFT includes queueing.", "",
              "| engine | concurrency | TTFT p50 s | TTFT p95 s | decode tok/s (per request) | throughput tok/s | wall s |",
              "|---|---|---|---|---|---|---|"]
    for name, r in result["engines"].items():
        for c, s in r["concurrency"].items():
            lines.append(f"| {name} | {c} | {s['ttft_p50_s']} | {s['ttft_p95_s']} | {s['decode_tok_s']} | {s['throughput_tok_s']} | {s['wall_s']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in result["engines"].items():
        cs = sorted(r["concurrency"], key=int)
        ax.plot([int(c) for c in cs], [r["concurrency"][c]["throughput_tok_s"] for c in cs], marker="o", label=name)
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("tokens/s (all requests)")
    ax.set_title(f"Qwen2.5-Coder-0.5B on {result['cpus']} CPU cores")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            flags = next((f.split(":", 1)[1].split() for f in Path("/proc/cpuinfo").read_text().splitlines() if f.startswith("flags")), [])
            simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
            return f"{line.split(':', 1)[1].strip()}, {'/'.join(simd)}"
    return platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="llama.cpp,vllm")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    engines = {"llama.cpp": LlamaCpp, "vllm": lambda: VLLMServe(max(concurrency))}
    result = {"date": date.today().isoformat(), "command": "python benchmarks/llm_speed.py " + " ".join(
                  f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
              "model": "Qwen/Qwen2.5-Coder-0.5B-Instruct (llama.cpp: Q4_K_M GGUF; vLLM: the same weights in bfloat16)",
              "cpus": os.cpu_count(), "cpu": _cpu_name(), "max_tokens": args.max_tokens, "engines": {}}
    for name in args.engines.split(","):
        engine = engines[name]()
        result["engines"][engine.name] = bench(engine, concurrency, args.max_tokens)
    args.out.mkdir(parents=True, exist_ok=True)
    _write(result, args.out / f"llm-speed-{result['date']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
