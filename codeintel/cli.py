"""Command line: ``codeintel index | search | status | serve | ask | traces | mcp``.

Errors a user can cause print one line and exit with code 2; Ctrl-C exits 130 and leaves the
previously published index untouched.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import msgspec

from codeintel.config import DEFAULT_MODE, GENERATORS, MODES
from codeintel.errors import CodeIntelError, InputError, ServiceError

__all__ = ["main"]

DEFAULT_INDEX = ".codeintel"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + traceback-ish noise
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _index_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--index",
        default=os.environ.get("CODEINTEL_INDEX", DEFAULT_INDEX),
        help=f"index directory (default: $CODEINTEL_INDEX or {DEFAULT_INDEX})",
    )
    p.add_argument("--config", help="settings TOML file (default: $CODEINTEL_CONFIG)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="codeintel", description="Index source repositories and search them.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("index", help="index (or incrementally re-index) a repository or folder")
    p.add_argument("path", help="repository checkout or plain folder")
    _index_arg(p)
    p.add_argument("--dry-run", action="store_true", help="report files, chunks and an estimated time; embed nothing")
    p.add_argument("--compact", action="store_true", help="fold the secondary dense index into the primary")
    p.add_argument("--rebuild", action="store_true", help="ignore the previous version and build from scratch")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="extra gitignore-style exclude (repeatable)")
    p.add_argument("--max-file-bytes", type=int, help="skip files larger than this")
    p.add_argument("--cache", help="embedding cache file (default: INDEX/cache/embeddings.duckdb)")
    p.add_argument("--show-skipped", action="store_true", help="list every skipped file with its reason")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="parse and embed as Ray Data tasks on the Ray "
                   "cluster at ADDRESS (e.g. auto, or host:6379); without one, a local Ray")
    p.add_argument("--workers", type=int, metavar="N", help="with --ray: embedder actors (default: one per node, or per GPU)")
    p.add_argument("--store", metavar="URI", help="also publish the version to this artifact store (a directory or "
                   "s3://bucket/prefix?endpoint_override=...; default: [store] uri of the config)")

    p = sub.add_parser("search", help="search an index")
    p.add_argument("query", help="what to find; '-' reads it from stdin (a pasted issue or log longer than argv allows)")
    _index_arg(p)
    p.add_argument("-k", "--k", type=int, default=10, help="number of hits (default 10)")
    p.add_argument("--mode", default=DEFAULT_MODE, choices=MODES)
    p.add_argument("--files", action="store_true", help="list files (best chunk each) instead of chunks")
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="only paths matching (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="drop paths matching (repeatable)")
    p.add_argument("--lang", action="append", default=[], metavar="LANG", help="only these languages (repeatable)")

    p = sub.add_parser("status", help="describe the published index")
    _index_arg(p)

    p = sub.add_parser("serve", help="run the Ray Serve app (HTTP API) over an index on a local Ray")
    _index_arg(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--ingress-replicas", type=int, default=1)
    p.add_argument("--shards", type=int, default=1, help="FAISS shards (replicas split the vectors by id)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard")
    p.add_argument("--generator", choices=GENERATORS, default="llm",
                   help="vllm: vLLM in the cluster (the vllm extra); llm: the bundled model in llama.cpp (default); "
                        "extractive: snippets, no model")

    p = sub.add_parser("traces", help="show the newest answer traces")
    p.add_argument("--dir", default=os.environ.get("CODEINTEL_TRACES", ".codeintel-traces"), help="trace dataset directory")
    p.add_argument("--last", type=int, default=20)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("ask", help="ask a running server; streams hits, answer text and citations")
    p.add_argument("question", help="the question; '-' reads it from stdin (a pasted issue or log longer than argv allows)")
    p.add_argument("--url", default=os.environ.get("CODEINTEL_URL", "http://127.0.0.1:8000"))
    p.add_argument("-k", "--k", type=int, default=5)
    p.add_argument("--session", help="X-Session-ID (its stored scope applies)")
    p.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for the server to be ready")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the next event (a CPU model's first token can take a while)")

    p = sub.add_parser("mcp", help="MCP server for coding agents, forwarding to a running codeintel server")
    p.add_argument("--url", default=os.environ.get("CODEINTEL_URL", "http://127.0.0.1:8000"),
                   help="codeintel HTTP endpoint (default: $CODEINTEL_URL or http://127.0.0.1:8000)")
    p.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio",
                   help="stdio (default: the agent spawns this process) or streamable-http (serves /mcp)")
    p.add_argument("--host", default="127.0.0.1", help="streamable-http: interface to listen on")
    p.add_argument("--port", type=int, default=8001, help="streamable-http: port (default 8001)")
    p.add_argument("--index", default=os.environ.get("CODEINTEL_INDEX"),
                   help="index estimate_index compares against (default: the served index when on this machine)")
    p.add_argument("--config", help="settings TOML file for estimate_index (default: $CODEINTEL_CONFIG)")
    return parser


def _settings(args):
    from codeintel.config import load_settings

    settings = load_settings(args.config)
    if getattr(args, "exclude", None) and args.command == "index":
        settings = msgspec.structs.replace(
            settings, walk=msgspec.structs.replace(settings.walk, extra_exclude=tuple(args.exclude))
        )
    if getattr(args, "max_file_bytes", None):
        if args.max_file_bytes <= 0:
            raise InputError("--max-file-bytes must be positive")
        settings = msgspec.structs.replace(settings, walk=msgspec.structs.replace(settings.walk, max_file_bytes=args.max_file_bytes))
    return settings


def _print_json(obj) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(obj)).decode() + "\n")


def cmd_index(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from codeintel.indexing.pipeline import Indexer, describe_dry_run

    settings = _settings(args)
    store = None
    if (args.store or settings.store.uri) and not args.dry_run:
        from codeintel.storage.store import ArtifactStore, publish_current

        store = ArtifactStore(args.store or settings.store.uri)  # a bad URI fails now, before any embedding
    console = Console(stderr=True)
    labels = {"read": "reading files", "chunk": "chunking", "embed": "embedding"}
    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=args.json,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=total, rate="")
            task = bar.tasks[tasks[stage]]
            rate = f"{done / task.elapsed:.1f}/s" if stage == "embed" and task.elapsed else ""
            bar.update(tasks[stage], completed=done, total=total, rate=rate)

        executor = None
        if args.ray is not None:
            from codeintel.indexing.distributed import RayExecutor

            if not args.ray:
                _local_ray_env()  # a cluster given by address keeps its token auth
            executor = RayExecutor(settings, address=args.ray or None, workers=args.workers)
        elif args.workers is not None:
            raise InputError("--workers goes with --ray")
        indexer = Indexer(settings, cache_path=Path(args.cache) if args.cache else None, executor=executor)
        report = indexer.run(args.path, args.index, dry_run=args.dry_run, compact=args.compact, rebuild=args.rebuild, progress=progress)
    published = publish_current(args.index, store, settings.store) if store is not None else None
    if args.json:
        _print_json(report)
        return 0
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(report.skipped.items(), key=lambda kv: -kv[1])) or "none"
    commit = f"@{report.commit[:12]}" if report.commit else ""
    if report.dry_run:
        print("\n".join(describe_dry_run(report)))
    elif report.up_to_date:
        print(f"up to date: {report.repo}{commit}: {report.files} files, {report.chunks} chunks (version {report.version}); "
              f"nothing embedded; {report.seconds:.1f} s")
    else:
        print(f"indexed {report.repo}{commit} into {report.index} (version {report.version}): "
              f"{report.files} files ({report.changed_files} changed, {report.removed_files} removed), "
              f"{report.chunks} chunks (+{report.new_chunks} -{report.removed_chunks}), "
              f"{report.embedded} embedded, {report.reused_embeddings} reused; skipped: {skipped}; "
              f"{report.dense_type} dense{' (compacted)' if report.compacted else ''}; {report.seconds:.1f} s")
    if args.show_skipped:
        for uri, reason in report.skipped_files:
            print(f"  skipped {uri}: {reason}")
    if published:
        print(f"published version {published} to {store.uri} (its CURRENT)")
    return 0


def _query_arg(value: str) -> str:
    """``-`` reads the query from stdin (UTF-8): one argv string is capped at 128 KiB, a pasted log is not."""
    if value != "-":
        return value
    data = getattr(sys.stdin, "buffer", sys.stdin).read()  # bytes from a real stdin: decoded strictly below
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise InputError("the query read from stdin ('-') is not UTF-8 text") from None
    if not text.strip():
        raise InputError("the query read from stdin ('-') is empty")
    return text


def cmd_search(args) -> int:
    args.query = _query_arg(args.query)
    from codeintel.retrieval.searcher import Searcher
    from codeintel.storage.scope import Scope

    settings = _settings(args)
    scope = Scope(include=tuple(args.include), exclude=tuple(args.exclude), languages=tuple(args.lang))
    searcher = Searcher(args.index, settings)
    try:
        result = searcher.search(args.query, k=args.k, mode=args.mode, scope=scope)
    finally:
        searcher.close()
    if args.json:
        _print_json(result)
        return 0
    if not result.hits:
        print("no hits")
    if args.files:
        for n, f in enumerate(result.files, 1):
            hit = result.hits[f.best_chunk]
            print(f"{n:>2}. {f.uri}  (best: {hit.start_line}-{hit.end_line} {hit.symbol})  score={f.score:.4f}")
        print(f"[{result.mode}] " + " ".join(f"{k}={v:.0f}ms" for k, v in result.timings_ms.items()), file=sys.stderr)
        return 0
    for n, hit in enumerate(result.hits, 1):
        symbol = f"  {hit.symbol}" if hit.symbol else ""
        print(f"{n:>2}. {hit.uri}:{hit.start_line}-{hit.end_line}{symbol}  score={hit.score:.4f}")
    stages = " ".join(f"{name}={ms:.0f}ms" for name, ms in result.timings_ms.items())
    print(f"[{result.mode}] {stages}", file=sys.stderr)
    return 0


def cmd_status(args) -> int:
    from codeintel.storage.layout import IndexLayout

    paths = IndexLayout(args.index).current()
    manifest = paths.read_manifest()
    if args.json:
        _print_json({"version": paths.name, "path": str(paths.root), **msgspec.to_builtins(manifest)})
        return 0
    m = manifest
    commit = f"@{m.repo.commit[:12]}" if m.repo.commit else " (not a git checkout)"
    print(f"index {args.index}: version {paths.name}, built {m.built_at}")
    print(f"  repo     {m.repo.name}{commit} from {m.repo.root}")
    print(f"  content  {m.files} files, {m.chunks} chunks; skipped {sum(m.skipped.values())}")
    print(f"  dense    {m.dense_type}: {m.dense_primary} primary + {m.dense_secondary} secondary vectors")
    print(f"  lexical  {m.lexical_docs} Lucene docs")
    c = m.contract
    print(f"  contract {c.model_id} dim={c.dim} {c.dtype} normalized={c.normalized} metric={c.metric} max_tokens={c.max_tokens}")
    return 0


def _local_ray_env() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local dev; clusters use token auth (README)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def cmd_serve(args) -> int:
    import signal
    import time

    from deployments import use_serve_env

    _local_ray_env()
    use_serve_env(local=True)  # before Ray starts: its processes read it once
    from codeintel.storage.layout import IndexLayout

    IndexLayout(args.index).current().read_manifest()  # fail fast, with one line, on a missing index
    settings = _settings(args)  # and on a bad config; every replica gets these settings
    import ray
    from ray import serve

    from deployments.app import build_app

    context = ray.init(address="local", num_cpus=max(4, os.cpu_count() or 1), include_dashboard=not args.no_dashboard,
                       dashboard_host="127.0.0.1", log_to_driver=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(
        build_app({"index_dir": str(Path(args.index).resolve()), "ingress_replicas": args.ingress_replicas,
                   "settings": msgspec.to_builtins(settings),
                   "num_shards": args.shards, "generator": args.generator}),
        name="codeintel",
        route_prefix="/",
    )
    dashboard = getattr(context, "dashboard_url", None)
    print(f"codeintel serving {args.index} at http://{args.host}:{args.port} (OpenAPI at /docs)", flush=True)
    if dashboard:
        print(f"Ray dashboard at http://{dashboard}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    serve.shutdown()
    ray.shutdown()
    return 0


def cmd_ask(args) -> int:
    args.question = _query_arg(args.question)
    import time

    import httpx

    deadline = time.monotonic() + args.wait
    try:
        return _ask(args, deadline)
    except httpx.TimeoutException:
        raise ServiceError(f"server at {args.url} sent nothing for {args.timeout:g} s (raise --timeout for a slow CPU model)") from None
    except httpx.HTTPError as exc:
        raise ServiceError(f"lost the server at {args.url}: {type(exc).__name__}: {exc}") from None


def _ask(args, deadline: float) -> int:
    import time

    import httpx
    from httpx_sse import EventSource, SSEError

    with httpx.Client(base_url=args.url, timeout=httpx.Timeout(args.timeout, connect=5)) as client:
        while True:
            try:
                ready = client.get("/readyz")
                if ready.status_code == 200:
                    break
                reason = "; ".join(ready.json().get("reasons", [])) or ready.text[:200]
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}"
            except ValueError:  # not JSON: Serve's proxy answers in plain text until the app is deployed
                reason = f"{ready.status_code} {ready.text[:200].strip()}"
            if time.monotonic() >= deadline:
                raise InputError(f"server at {args.url} is not ready: {reason}")
            time.sleep(1)
        headers = {"X-Session-ID": args.session} if args.session else {}
        with client.stream("POST", "/v1/answer", json={"query": args.question, "k": args.k}, headers=headers) as response:
            if response.status_code != 200:
                response.read()
                raise InputError(f"server said {response.status_code}: {response.json().get('detail', response.text[:200])}")
            mid_line = False
            try:
                for sse in EventSource(response).iter_sse():
                    if not sse.data:  # nothing to print (e.g. a keep-alive event)
                        continue
                    event, data = sse.event, sse.json()
                    if event == "hit":
                        symbol = f"  {data['symbol']}" if data["symbol"] else ""
                        print(f"hit {data['n']}: {data['uri']}:{data['start_line']}-{data['end_line']}{symbol}", flush=True)
                    elif event == "token":
                        print(data["text"], end="", flush=True)
                        mid_line = not data["text"].endswith("\n")
                    elif event == "citation":
                        how = "draws on" if data.get("attributed") else "cites"  # attributed: matched after the fact
                        print(f"  -> {how} [{data['n']}] {data['uri']}:{data['start_line']}-{data['end_line']}", flush=True)
                        mid_line = False
                    elif event == "error":
                        print(f"error: {data['message']}", file=sys.stderr, flush=True)
                    elif event == "done":
                        if mid_line:  # a model's text rarely ends in a newline: end its line first
                            print(flush=True)
                        print(f"done: trace {data['trace_id']}, {data['hits']} hits, {data['ms']:.0f} ms ({data['mode']})", flush=True)
            except SSEError as exc:  # a 200 that is not an event stream: --url points at something else
                raise InputError(f"server at {args.url} did not answer with an event stream: {exc}") from None
    return 0


def cmd_traces(args) -> int:
    from codeintel.answer.traces import read_traces

    if args.last < 1:
        raise InputError("--last must be at least 1")
    rows = read_traces(args.dir, args.last)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"no traces in {args.dir}")
    for r in rows:
        fallbacks = f" fallbacks={','.join(r['fallbacks'])}" if r["fallbacks"] else ""
        error = f" error={r['error']}" if r["error"] else ""
        ttft = f" ttft={r['ttft_ms']:.0f}ms" if r["ttft_ms"] is not None else ""
        print(f"{r['started_at']} {r['trace_id'][:12]} {r['mode']:<10} in={r['tokens_in']} out={r['tokens_out']}{ttft}{fallbacks}{error}  {r['query'][:60]!r}")
    return 0


def cmd_mcp(args) -> int:
    from urllib.parse import urlsplit

    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InputError(f"--url must be an http(s) URL such as http://127.0.0.1:8000, not {args.url!r}")
    if not 1 <= args.port <= 65535:
        raise InputError(f"--port must be between 1 and 65535, not {args.port}")
    from codeintel.mcp import serve

    serve(args.url, args.transport, args.host, args.port, args.index, args.config)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    handler = {"index": cmd_index, "search": cmd_search, "status": cmd_status, "serve": cmd_serve, "ask": cmd_ask, "traces": cmd_traces,
               "mcp": cmd_mcp}[args.command]
    try:
        return handler(args)
    except CodeIntelError as exc:
        print(f"codeintel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codeintel: interrupted; the previously published index is untouched", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
