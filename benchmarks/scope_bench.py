"""Read-your-writes of session scopes across ingress replicas, and what the store read costs.

Starts the Serve graph on a small index with ``--replicas`` ingress replicas (or uses ``--url``),
then flips one session's scope ``--flips`` times (python, javascript, cleared), searching right
after each change, and counts the searches that did not honour the scope just written. The
``session`` stage of each search's timings is the read of the shared ScopeStore.

    python benchmarks/scope_bench.py --flips 200 --replicas 2
Writes benchmarks/results/scope-<date>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from deployments import use_serve_env  # noqa: E402

use_serve_env(local=True)  # as `codeintel serve` runs; RAY_SERVE_ENABLE_HA_PROXY=0 RAY_SERVE_THROUGHPUT_OPTIMIZED=0 measures Serve's default

from codeintel.retrieval.metrics import percentile  # noqa: E402

PORT = 18830
FILES = {
    "app/logging_setup.py": "import logging\n\n\ndef configure_logging(level='INFO'):\n    return logging.getLogger(level)\n",
    "web/main.js": "export function renderPage(title) {\n  return title;\n}\n",
}


def flip(url: str, flips: int) -> dict:
    stale, session_ms, search_ms = [], [], []
    headers = {"X-Session-ID": "bench"}
    body = {"query": "renderPage configure_logging", "k": 5, "mode": "bm25"}
    with httpx.Client(base_url=url, timeout=60) as client:
        for n in range(flips):
            want = ("python", "javascript", None)[n % 3]
            if want is None:
                client.delete("/v1/scope", headers=headers)
            else:
                client.put("/v1/scope", json={"languages": [want]}, headers=headers)
            t = time.perf_counter()
            result = client.post("/v1/search", json=body, headers=headers).json()
            search_ms.append((time.perf_counter() - t) * 1000)
            session_ms.append(result["timings_ms"]["session"])
            langs = {h["lang"] for h in result["hits"]}
            if (langs != {want}) if want else not {"python", "javascript"} <= langs:
                stale.append(n)
    return {"flips": flips, "stale": len(stale), "stale_flips": stale,
            "session_ms": {"p50": percentile(session_ms, 0.5), "p95": percentile(session_ms, 0.95)},
            "search_ms": {"p50": percentile(search_ms, 0.5), "p95": percentile(search_ms, 0.95)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", type=int, default=200)
    ap.add_argument("--replicas", type=int, default=2, help="ingress replicas of the graph started here")
    ap.add_argument("--url", help="a running codeintel server instead (its index must hold Python and JavaScript)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if args.url:
        result = flip(args.url, args.flips)
    else:
        import ray
        from ray import serve

        from codeintel.indexing.pipeline import Indexer
        from deployments.app import AppArgs, build_graph

        work = Path(tempfile.mkdtemp(prefix="codeintel-scope-"))
        for rel, text in FILES.items():
            (work / "repo" / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / "repo" / rel).write_text(text)
        Indexer().run(work / "repo", work / "idx")
        ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": PORT})
            serve.run(build_graph(AppArgs(index_dir=str(work / "idx"), ingress_replicas=args.replicas)), name="scopes", route_prefix="/")
            result = flip(f"http://127.0.0.1:{PORT}", args.flips)
        finally:
            serve.shutdown()
            ray.shutdown()
    result |= {"replicas": None if args.url else args.replicas, "command": "python benchmarks/scope_bench.py " + " ".join(sys.argv[1:]),
               "date": date.today().isoformat(), "cpus": os.cpu_count()}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"scope-{result['date']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    stem.with_suffix(".md").write_text(
        f"# Session scopes across {result['replicas'] or '?'} ingress replicas ({result['date']}, {result['cpus']} CPUs)\n\n"
        f"`{result['command']}`\n\n| measure | value |\n|---|---|\n"
        f"| scope flips, each followed at once by a search | {result['flips']} |\n"
        f"| searches that ignored the scope just written | {result['stale']} |\n"
        f"| ScopeStore read (`session` stage) p50 / p95 | {result['session_ms']['p50']:.2f} / {result['session_ms']['p95']:.2f} ms |\n"
        f"| whole search (bm25, HTTP) p50 / p95 | {result['search_ms']['p50']:.1f} / {result['search_ms']['p95']:.1f} ms |\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
