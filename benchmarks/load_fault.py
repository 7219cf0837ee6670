"""Bounded load with injected faults against the real Serve app; does it keep answering, and say so?

    python benchmarks/load_fault.py [--repo .] [--index DIR] [--duration 150] [--concurrency 4] [--max-requests 5000]

Loopback only. Indexes --repo (default: this repository) into a temporary directory, starts the
graph on a local Ray (extractive generator: the load is about the service, not the CPU LLM), then
sends a fixed mix of requests (search hybrid 70 %, hybrid+rerank 15 %, /v1/answer 15 %) from
--concurrency workers for --duration seconds while a fault injector:

- kills one replica of a deployment every 30 s, cycling through --kill (via ``ray.kill``; Serve
  starts a replacement);
- makes the lexical retriever answer slower than the ingress' retriever timeout for 15 s;
- deletes the published version's Lucene files and kills the lexical replica, so its replacement
  cannot open the index (readiness: degraded), then asks POST /v1/reindex {"rebuild": true} and
  measures the time until /readyz says ready again.

/readyz is polled every second. Written: benchmarks/results/load-fault-<date>.{json,md} with
requests sent/succeeded/failed by status, p50/p95 before/during/after the faults, recovery times
and the readiness modes seen.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

import httpx
from httpx_sse import EventSource

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from deployments import use_serve_env  # noqa: E402

use_serve_env(local=True)  # as `codeintel serve` runs; RAY_SERVE_ENABLE_HA_PROXY=0 RAY_SERVE_THROUGHPUT_OPTIMIZED=0 measures Serve's default

from codeintel.retrieval.metrics import percentile  # noqa: E402
from codeintel.storage.layout import IndexLayout  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PORT = 18810
APP = "loadfault"
QUERIES = [
    "how is the index version published atomically",
    "reciprocal rank fusion of retrievers",
    "where are chunk texts hydrated from DuckDB",
    "cross-encoder reranking weight",
    "session scope stored in redis",
    "problem details for invalid requests",
    "how does the walker honour gitignore",
    "SSE stream of answer events with citations",
    "FAISS index on GPU with StandardGpuResources",
    "Lucene BM25 retriever with pyjnius",
    "token budget of the prompt",
    "embedding cache keyed by content hash",
]


class Recorder:
    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.requests: list[dict] = []
        self.events: list[dict] = []
        self.ready: list[dict] = []

    def event(self, kind: str, **data) -> None:
        row = {"t": round(time.monotonic() - self.t0, 2), "event": kind, **data}
        self.events.append(row)
        print(f"[{row['t']:7.2f}s] {kind} {data}", flush=True)


async def one_request(client: httpx.AsyncClient, rng: random.Random) -> tuple[str, int, str]:
    query = rng.choice(QUERIES)
    roll = rng.random()
    if roll < 0.15:
        async with client.stream("POST", "/v1/answer", json={"query": query, "k": 4, "mode": "hybrid"}) as r:
            if r.status_code != 200:
                await r.aread()
                return "answer", r.status_code, ""
            last = ""
            async for sse in EventSource(r).aiter_sse():
                last = sse.event
            return "answer", 200 if last == "done" else 599, "" if last == "done" else f"stream ended with {last!r}"
    mode = "hybrid+rerank" if roll < 0.30 else "hybrid"
    r = await client.post("/v1/search", json={"query": query, "k": 5, "mode": mode})
    skipped = ",".join(sorted(r.json().get("skipped_retrievers", {}))) if r.status_code == 200 else r.text[:200]
    return f"search:{mode}", r.status_code, skipped


async def load(url: str, rec: Recorder, duration: float, concurrency: int, max_requests: int) -> None:
    deadline = rec.t0 + duration
    sent = 0

    async def worker(n: int) -> None:
        nonlocal sent
        rng = random.Random(n)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while time.monotonic() < deadline and sent < max_requests:
                sent += 1
                start = time.monotonic()
                try:
                    kind, status, note = await one_request(client, rng)
                except httpx.HTTPError as exc:
                    kind, status, note = "error", 0, f"{type(exc).__name__}: {exc}"
                rec.requests.append({"t": round(start - rec.t0, 3), "kind": kind, "status": status,
                                     "ms": round((time.monotonic() - start) * 1000, 1), "note": note})

    await asyncio.gather(*(worker(n) for n in range(concurrency)))


async def poll_ready(url: str, rec: Recorder, until: float) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while time.monotonic() < until:
            try:
                body = (await client.get("/readyz")).json()
                mode, reasons = body["mode"], body["reasons"]
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                mode, reasons = "unreachable", [type(exc).__name__]
            t = round(time.monotonic() - rec.t0, 2)
            if not rec.ready or rec.ready[-1]["mode"] != mode or rec.ready[-1]["reasons"] != reasons:
                rec.ready.append({"t": t, "mode": mode, "reasons": reasons})
                print(f"[{t:7.2f}s] readyz {mode} {reasons}", flush=True)
            await asyncio.sleep(1.0)


def _slowable_lexical():
    """The real BM25 deployment plus a delay this benchmark switches on: fault injection stays out of production code."""
    from ray import serve

    from codeintel.service.backends import LexicalBackend

    @serve.deployment(name="LexicalRetriever", ray_actor_options={"num_cpus": 0.25})
    class SlowableLexical(LexicalBackend):
        slow_s = slow_until = 0.0

        def slow_down(self, seconds: float, for_s: float) -> None:
            self.slow_s, self.slow_until = seconds, time.monotonic() + for_s

        def retrieve(self, *args):
            if time.monotonic() < self.slow_until:
                time.sleep(self.slow_s)
            return super().retrieve(*args)

        def check_health(self) -> None:
            self.check()

    return SlowableLexical


def replica_actors(deployment: str) -> list[str]:
    """Names of the deployment's live replica actors (from the GCS: no dashboard needed)."""
    import ray

    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{APP}#{deployment}#")]


def kill_one(deployment: str) -> tuple[str, int]:
    """Kill one replica of ``deployment``; its name and how many replicas were alive."""
    import ray

    alive = replica_actors(deployment)
    ray.kill(ray.get_actor(alive[0], namespace="serve"), no_restart=True)
    return alive[0], len(alive)


async def wait_replaced(deployment: str, killed: str, replicas: int, timeout: float = 120) -> float | None:
    """Seconds until ``replicas`` replicas are alive again, the killed one not among them."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        alive = await asyncio.to_thread(replica_actors, deployment)
        if len(alive) >= replicas and killed not in alive:
            return time.monotonic() - start
        await asyncio.sleep(0.5)
    return None


async def wait_ready(url: str, timeout: float) -> float | None:
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while time.monotonic() - start < timeout:
            try:
                if (await client.get("/readyz")).json()["mode"] == "ready":
                    return time.monotonic() - start
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.5)
    return None


async def inject(url: str, rec: Recorder, index_dir: Path, duration: float, kills: list[str]) -> dict:
    from ray import serve

    recovery: dict = {"kills": []}
    at = lambda seconds: asyncio.sleep(max(0.0, rec.t0 + seconds - time.monotonic()))  # noqa: E731
    lexical = serve.get_deployment_handle("LexicalRetriever", app_name=APP)
    corrupt_at = duration - 55
    schedule = [(30.0 * i, kills[(i - 1) % len(kills)]) for i in range(1, int(corrupt_at // 30) + 1)]
    for seconds, deployment in schedule:
        await at(seconds)
        killed, replicas = await asyncio.to_thread(kill_one, deployment)
        rec.event("kill", deployment=deployment, replica=killed)
        replaced = await wait_replaced(deployment, killed, replicas)
        ready = await wait_ready(url, 60)
        recovery["kills"].append({"deployment": deployment, "at_s": seconds, "replacement_alive_s": replaced and round(replaced, 2),
                                  "ready_again_s": ready and round(ready + (replaced or 0), 2)})
        rec.event("replaced", deployment=deployment, after_s=replaced)
        if seconds == 30.0:  # once, between the first kills: the lexical retriever stops answering in time
            await at(45)
            await lexical.slow_down.remote(8.0, 15.0)
            rec.event("lexical_slow", seconds=8.0, for_s=15.0)

    await at(corrupt_at)
    version = IndexLayout(index_dir).current()
    shutil.rmtree(version.lexical)  # the published version loses its Lucene files
    killed, _ = await asyncio.to_thread(kill_one, "LexicalRetriever")  # ... and its replacement must open them
    rec.event("corrupt", removed=str(version.lexical), killed=killed)
    await asyncio.sleep(10)
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        job = (await client.post("/v1/reindex", json={"rebuild": True})).json()
        rec.event("reindex", job=job.get("job_id"), state=job.get("state"))
        while job.get("state") == "running":
            await asyncio.sleep(1)
            job = (await client.get(f"/v1/reindex/{job['job_id']}")).json()
    rebuilt = time.monotonic() - start
    ready = await wait_ready(url, 90)
    recovery["corruption"] = {"rebuild_s": round(rebuilt, 2), "job_state": job.get("state"), "job_error": job.get("error"),
                              "ready_again_after_reindex_start_s": ready and round(ready + rebuilt, 2)}
    rec.event("recovered", **recovery["corruption"])
    return recovery


def phase_stats(rows: list[dict], first_fault: float, last_recovery: float) -> dict:
    phases = {"before": [r for r in rows if r["t"] < first_fault],
              "during": [r for r in rows if first_fault <= r["t"] < last_recovery],
              "after": [r for r in rows if r["t"] >= last_recovery]}
    out = {}
    for name, part in phases.items():
        ok = [r["ms"] for r in part if r["status"] == 200]
        out[name] = {"requests": len(part), "ok": len(ok), "p50_ms": percentile(ok, 0.5) if ok else None,
                     "p95_ms": percentile(ok, 0.95) if ok else None,
                     "degraded": sum(1 for r in part if r["status"] == 200 and r["note"])}
    return out


def by_kind(rows: list[dict]) -> dict:
    out = {}
    for kind in sorted({r["kind"] for r in rows}):
        ok = [r["ms"] for r in rows if r["kind"] == kind and r["status"] == 200]
        out[kind] = {"requests": sum(1 for r in rows if r["kind"] == kind), "ok": len(ok),
                     "p50_ms": percentile(ok, 0.5) if ok else None, "p95_ms": percentile(ok, 0.95) if ok else None}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=str(ROOT))
    ap.add_argument("--duration", type=float, default=150.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-requests", type=int, default=5000)
    ap.add_argument("--kill", default="Hydrator,LexicalRetriever,FaissShard0", help="deployments whose replicas are killed, in turn")
    ap.add_argument("--replicas", type=int, default=1, help="replicas of each killed deployment")
    ap.add_argument("--index", help="index directory to build and keep (default: a temporary one)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    if args.duration < 90:
        print("--duration must be at least 90 s (faults at 30 s intervals, then the corruption)", file=sys.stderr)
        return 2

    import ray
    from ray import serve

    from codeintel.config import SearchSettings, Settings
    from codeintel.indexing.pipeline import Indexer
    from deployments.app import AppArgs, bind_backends, bind_ingress
    from deployments.components import FaissShard, Hydrator

    work = Path(tempfile.mkdtemp(prefix="codeintel-loadfault-"))
    index_dir = Path(args.index) if args.index else work / "idx"
    t = time.perf_counter()
    report = Indexer().run(args.repo, index_dir)  # incremental: a kept --index is up to date in a second
    print(f"indexed {report.files} files, {report.chunks} chunks in {time.perf_counter() - t:.1f} s", flush=True)
    kills = [k.strip() for k in args.kill.split(",") if k.strip()]
    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    url = f"http://127.0.0.1:{PORT}"
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": PORT})
        settings = Settings(search=SearchSettings(retriever_timeout_s=3.0))
        cfg = AppArgs(index_dir=str(index_dir), ingress_replicas=2, generator="extractive", settings=settings)
        replicas = {name: (args.replicas if name in kills else 1) for name in ("Hydrator", "LexicalRetriever", "FaissShard0")}
        backends = dataclasses.replace(  # the killed deployments replicated, and a lexical retriever that can be slowed
            bind_backends(cfg, settings),
            hydrator=Hydrator.options(num_replicas=replicas["Hydrator"]).bind(cfg.index_dir, settings),
            lexical=_slowable_lexical().options(num_replicas=replicas["LexicalRetriever"]).bind(cfg.index_dir, settings),
            shards=[FaissShard.options(name="FaissShard0", num_replicas=replicas["FaissShard0"]).bind(cfg.index_dir, 0, 1, None, settings)],
        )
        serve.run(bind_ingress(cfg, settings, backends), name=APP, route_prefix="/")
        rec = Recorder(time.monotonic())

        async def run() -> dict:
            try:
                poller = asyncio.create_task(poll_ready(url, rec, rec.t0 + args.duration + 5))
                injector = asyncio.create_task(inject(url, rec, index_dir, args.duration, kills))
                await load(url, rec, args.duration, args.concurrency, args.max_requests)
                recovery = await injector
                await poller
                return recovery
            finally:  # on this loop: with SERVE_ENV the injector's handle routes on it, and it closes after run()
                await serve.shutdown_async()

        recovery = asyncio.run(run())
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    rows = rec.requests
    first_fault = min(e["t"] for e in rec.events)
    last_recovery = max(e["t"] for e in rec.events)
    statuses = Counter(r["status"] for r in rows)
    failures = [r for r in rows if r["status"] != 200]
    result = {
        "date": date.today().isoformat(), "repo": args.repo, "chunks": report.chunks, "duration_s": args.duration,
        "concurrency": args.concurrency, "killed_deployments": kills, "replicas_of_killed": args.replicas,
        "requests_sent": len(rows), "succeeded": statuses.get(200, 0), "failed_by_status": {str(k): v for k, v in statuses.items() if k != 200},
        "degraded_but_answered": sum(1 for r in rows if r["status"] == 200 and r["note"]),
        "phases": phase_stats(rows, first_fault, last_recovery), "by_kind": by_kind(rows), "recovery": recovery,
        "readiness_modes_seen": sorted({r["mode"] for r in rec.ready}), "readiness_timeline": rec.ready,
        "events": rec.events, "failures": failures[:50],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / (f"load-fault-{result['date']}" if args.replicas == 1 else f"load-fault-{args.replicas}replicas-{result['date']}")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    lines = [f"# Load with faults ({r['date']})", "",
             f"`python benchmarks/load_fault.py --duration {r['duration_s']:.0f} --concurrency {r['concurrency']}` on {r['chunks']} chunks "
             f"(2-core box); killed in turn: {', '.join(r['killed_deployments'])} ({r['replicas_of_killed']} replica(s) each)", "",
             "| measure | value |", "|---|---|",
             f"| requests sent | {r['requests_sent']} |", f"| succeeded (200) | {r['succeeded']} |",
             f"| failed by status | {r['failed_by_status'] or 'none'} |",
             f"| answered degraded (a retriever skipped) | {r['degraded_but_answered']} |",
             f"| readiness modes seen | {', '.join(r['readiness_modes_seen'])} |"]
    for k in r["recovery"]["kills"]:
        lines.append(f"| kill {k['deployment']} at {k['at_s']:.0f} s | replacement alive after {k['replacement_alive_s']} s, ready after {k['ready_again_s']} s |")
    c = r["recovery"]["corruption"]
    lines.append(f"| Lucene files deleted + replica killed | rebuild reindex {c['job_state']} in {c['rebuild_s']} s, ready {c['ready_again_after_reindex_start_s']} s after it started |")
    lines += ["", "| phase | requests | ok | degraded | p50 ms | p95 ms |", "|---|---|---|---|---|---|"]
    for name, p in r["phases"].items():
        lines.append(f"| {name} | {p['requests']} | {p['ok']} | {p['degraded']} | {p['p50_ms'] and round(p['p50_ms'], 1)} | {p['p95_ms'] and round(p['p95_ms'], 1)} |")
    lines += ["", "| request kind | requests | ok | p50 ms | p95 ms |", "|---|---|---|---|---|"]
    for name, p in r["by_kind"].items():
        lines.append(f"| {name} | {p['requests']} | {p['ok']} | {p['p50_ms'] and round(p['p50_ms'], 1)} | {p['p95_ms'] and round(p['p95_ms'], 1)} |")
    lines += ["", "Readiness timeline:", ""] + [f"- {x['t']} s: {x['mode']} {x['reasons']}" for x in r["readiness_timeline"]]
    if r["failures"]:
        lines += ["", "Failures:", ""] + [f"- {f['t']} s {f['kind']} {f['status']}: {f['note'][:160]}" for f in r["failures"][:20]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
