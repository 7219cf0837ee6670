"""The MCP server: codeintel's tools for coding agents, forwarding to a running codeintel HTTP service.

Every tool is a thin adapter with a closed schema: an argument the schema does not name is an error
that names it (silently dropping an unknown filter would return unscoped results that look scoped).
Failures of the HTTP side (problem details, a down or unreachable service) become MCP tool errors
carrying the service's detail; the server itself keeps running. Results are compact text within the
caller's ``max_tokens``, with the same data as structured content.
"""

# no `from __future__ import annotations`: the SDK reads the tools' annotations at runtime

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from codeintel.config import DEFAULT_MODE, Mode
from codeintel.errors import CodeIntelError, InputError, ServiceError
from codeintel.indexing.languages import KNOWN_LANGUAGES
from codeintel.mcp.http import DEFAULT_URL, CodeIntelClient
from codeintel.mcp.render import render_chunks, render_hits, render_lines, render_list
from codeintel.mcp.sessions import SessionIds
from codeintel.mcp.strict import StrictMCPServer, strict_tool
from codeintel.retrieval.query import MAX_QUERY_CHARS

__all__ = ["build_server", "serve", "TOOL_NAMES"]

TOOL_NAMES = ("search_code", "answer", "find_definition", "find_references", "file_outline", "get_chunk", "read_file",
              "set_scope", "get_scope", "clear_scope", "index_status", "reindex", "estimate_index")

INSTRUCTIONS = """\
codeintel searches one indexed repository (hybrid semantic + keyword search with reranking) and \
answers questions about it with citations. Paths are repository-relative, as hits report them. \
Typical flow: search_code to find where something lives; get_chunk or read_file to read around a \
hit; answer for an explanation with cited sources. find_definition, find_references and file_outline \
jump through the code graph by name (definitions, call sites, imports, subclasses). set_scope restricts every later search and \
answer in this session to some paths or languages; index_status says what is indexed and how fresh."""

Language = Literal[tuple(sorted(KNOWN_LANGUAGES))]  # type: ignore[valid-type]

_GLOBS = ("Glob semantics: `**` crosses directories, `*` does not; a pattern without `/` matches file names at "
          "any depth (`*.py`); a trailing `/` means everything below (`docs/`); a leading `/` anchors at the repository root (`/setup.py`).")
Include = Annotated[list[str], Field(max_length=64, description="Only paths matching one of these globs, e.g. ['src/**', '*.py']. " + _GLOBS)]
Exclude = Annotated[list[str], Field(max_length=64, description="Drop paths matching any of these globs, e.g. ['tests/', '*_test.go'].")]
Languages = Annotated[list[Language], Field(max_length=64, description="Only chunks in these languages.")]
ModeArg = Annotated[Mode, Field(description="Retrieval mode: hybrid (default: semantic + keywords + files and definitions the query names), hybrid+rerank (adds a cross-encoder pass, ~1-4 s slower), dense (semantic only), bm25 (keywords only).")]


def max_tokens_arg(default: int) -> Any:
    return Annotated[int, Field(ge=100, le=50_000, description=f"Budget for this result in tokens (~4 characters each; default {default}). "
                                                              "Locations are always kept; code text is cut at line boundaries to fit.")]


class _Progress:
    """Progress notifications with a strictly increasing counter (the spec requires it to grow)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx, self.step = ctx, 0

    async def __call__(self, message: str) -> None:
        self.step += 1
        try:
            await self.ctx.report_progress(self.step, None, message)
        except Exception:  # progress is best effort: a client gone quiet must not fail the tool
            pass


def _result(text: str, data: dict) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def _scope(include: list[str], exclude: list[str], languages: list[str]) -> dict | None:
    """The explicit scope of a call, or None to let the session scope apply."""
    if include or exclude or languages:
        return {"include": list(include), "exclude": list(exclude), "languages": list(languages)}
    return None


def _scope_text(scope: dict | None) -> str:
    if not scope:
        return "none"
    parts = [f"{k}={','.join(v)}" for k, v in scope.items() if v]
    return " ".join(parts) or "none"


def _age(built_at: str | None) -> float | None:
    try:
        return round((datetime.now(timezone.utc) - datetime.fromisoformat(built_at)).total_seconds())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _live_commit(root: str) -> str | None:
    """HEAD of the indexed checkout when it is visible from this process (None: not a git checkout here)."""
    from codeintel.indexing.walk import repo_info

    try:
        return repo_info(root).commit if Path(root).is_dir() else None
    except CodeIntelError:
        return None


READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def build_server(url: str = DEFAULT_URL, index_dir: str | None = None, config: str | None = None,
                 *, transport: Any = None, poll_s: float = 0.5, reindex_wait_s: float = 1800.0) -> MCPServer:
    """The codeintel MCP server forwarding to the HTTP service at ``url``.

    ``index_dir``/``config`` only matter for ``estimate_index``, which runs here: the index the dry run
    compares against (default: the served index when this process can see it, else ./.codeintel).
    ``transport`` replaces httpx's (tests).
    """
    client = CodeIntelClient(url, transport=transport)
    sessions = SessionIds()

    # -- search and answers -------------------------------------------------------------------
    async def search_code(
        ctx: Context,
        query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What to find: a question in plain words, identifiers, an error message or a pasted traceback.")],
        k: Annotated[int, Field(ge=1, le=50, description="Number of hits (default 10).")] = 10,
        include: Include = [],
        exclude: Exclude = [],
        languages: Languages = [],
        mode: ModeArg = DEFAULT_MODE,
        max_tokens: max_tokens_arg(2000) = 2000,
    ) -> CallToolResult:
        scope = _scope(include, exclude, languages)
        body = {"query": query, "k": k, "mode": mode, **({"scope": scope} if scope else {})}
        session = sessions.for_context(ctx)
        if scope:
            result = await client.search(body, session)
            applied = _scope_text(scope) + " (this call)"
        else:  # say which session scope applied: an agent must know when results are restricted
            result, session_scope = await asyncio.gather(client.search(body, session), client.get_scope(session))
            applied = f"{_scope_text(session_scope)} (session)" if session_scope else "none"
        hits = [{"uri": h["uri"], "start_line": h["start_line"], "end_line": h["end_line"], "symbol": h["symbol"],
                 "lang": h["lang"], "score": round(h["score"], 4), "text": h["text"]} for h in result["hits"]]
        skipped = result.get("skipped_retrievers") or {}
        header = f"{len(hits)} hits ({result['mode']}; scope: {applied})"
        if skipped:
            header += "; degraded, skipped: " + "; ".join(f"{k_} ({v})" for k_, v in skipped.items())
        if not hits:
            header += "\nno hits: try other words, an identifier, another mode, or a wider scope (get_scope / clear_scope)"
        text, shown = render_hits(hits, max_tokens, header, more_hint="code cut at max_tokens: get_chunk or read_file show the rest")
        return _result(text, {"hits": shown, "total_hits": len(hits), "mode": result["mode"], "skipped_retrievers": skipped,
                              "index_version": result.get("version")})

    async def answer(
        ctx: Context,
        question: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The question about the indexed code, in plain words.")],
        k: Annotated[int, Field(ge=1, le=20, description="Passages retrieved as sources (default 5).")] = 5,
        include: Include = [],
        exclude: Exclude = [],
        languages: Languages = [],
        mode: ModeArg = DEFAULT_MODE,
        max_tokens: max_tokens_arg(1500) = 1500,
    ) -> CallToolResult:
        scope = _scope(include, exclude, languages)
        body = {"query": question, "k": k, "mode": mode, **({"scope": scope} if scope else {})}
        progress = _Progress(ctx)
        sources: list[dict] = []
        cited: dict[int, dict] = {}
        tokens: list[str] = []
        errors: list[str] = []
        done: dict | None = None
        last_note = time.monotonic()
        await progress(f"retrieving up to {k} sources")
        async for event, data in client.answer(body, sessions.for_context(ctx)):
            if event == "hit":
                sources.append(data)
            elif event == "token":
                if not tokens:
                    await progress(f"retrieved {len(sources)} sources; generating")
                    last_note = time.monotonic()
                tokens.append(data["text"])
                if time.monotonic() - last_note > 1.0:
                    last_note = time.monotonic()
                    await progress(f"generating: {len(tokens)} tokens")
            elif event == "citation":
                cited[data["n"]] = data
                await progress(f"cites [{data['n']}] {data['uri']}:{data['start_line']}-{data['end_line']}")
            elif event == "error":
                errors.append(data.get("message", "unknown error"))
            elif event == "done":
                done = data
        text = "".join(tokens).strip()
        if not text:
            raise ServiceError("; ".join(errors) or "the server ended the answer without text")
        await progress("done")
        budget = max_tokens * 4
        # a cited source shows the lines the model was given (a window of the hit's chunk)
        refs = [{"n": s["n"], "uri": s["uri"], "start_line": cited.get(s["n"], s)["start_line"], "end_line": cited.get(s["n"], s)["end_line"],
                 "symbol": s.get("symbol", ""), "cited": s["n"] in cited,
                 "attributed": bool(cited.get(s["n"], {}).get("attributed"))} for s in sources]  # matched after the fact
        lines = [f"[{r['n']}] {r['uri']}:{r['start_line']}-{r['end_line']}" + (f"  {r['symbol']}" if r["symbol"] else "")
                 + ("  (not cited)" if not r["cited"] else "  (attributed: the answer uses its identifiers)" if r["attributed"] else "")
                 for r in refs]
        tail = "\n\nSources:\n" + "\n".join(lines)
        if errors:
            tail += "\nwarnings: " + "; ".join(errors)
        shown = text if len(text) + len(tail) <= budget else text[: max(200, budget - len(tail) - 40)].rstrip() + " ... (answer cut at max_tokens)"
        model = done.get("mode") if done else None
        head = f"Answer ({model or 'unknown model'}, {len(cited)} of {len(sources)} sources cited):\n"
        return _result(head + shown + tail, {"answer": shown, "citations": [c for c in refs if c["cited"]], "sources": refs,
                                             "model": model, "trace_id": done.get("trace_id") if done else None,
                                             "warnings": errors, "complete": done is not None})

    # -- the code graph -------------------------------------------------------------------------
    SymbolArg = Annotated[str, Field(min_length=1, max_length=512, description="A name (`publish`) or a qualified name (`IndexLayout.publish`, `pkg.module.Class`).")]

    async def find_definition(
        ctx: Context,
        symbol: SymbolArg,
        include: Include = [],
        exclude: Exclude = [],
        languages: Languages = [],
        max_tokens: max_tokens_arg(1000) = 1000,
    ) -> CallToolResult:
        scope = _scope(include, exclude, languages)
        result = await client.definitions({"symbol": symbol, "limit": 50, **({"scope": scope} if scope else {})}, sessions.for_context(ctx))
        found = result["definitions"]
        lines = [f"{d['uri']}:{d['start_line']}-{d['end_line']}  {d['kind']} {d['qualname']}" for d in found]
        header = f"{len(found)} definition{'s' if len(found) != 1 else ''} of {symbol!r}" + (
            "" if found else ": try search_code (the graph knows definitions by name in Python, JS/TS, Go, Rust, Java, C/C++)")
        text, shown = render_list(header, lines, max_tokens)
        return _result(text, {"symbol": symbol, "definitions": found[:shown], "total": len(found)})

    async def find_references(
        ctx: Context,
        symbol: SymbolArg,
        include: Include = [],
        exclude: Exclude = [],
        languages: Languages = [],
        max_tokens: max_tokens_arg(2000) = 2000,
    ) -> CallToolResult:
        scope = _scope(include, exclude, languages)
        result = await client.references({"symbol": symbol, "limit": 200, **({"scope": scope} if scope else {})}, sessions.for_context(ctx))
        found = result["references"]
        lines = [f"{r['uri']}:{r['line']}  {r['kind']}" + (f" in {r['scope']}" if r["scope"] else "") + (f"  | {r['text']}" if r["text"] else "")
                 for r in found]
        header = f"{len(found)}{'+' if result.get('truncated') else ''} reference{'s' if len(found) != 1 else ''} to {symbol!r} (calls, imports, subclasses, matched by name)"
        text, shown = render_list(header, lines, max_tokens)
        return _result(text, {"symbol": symbol, "references": found[:shown], "total": len(found), "truncated": bool(result.get("truncated"))})

    async def file_outline(
        uri: Annotated[str, Field(min_length=1, max_length=4096, description="Repository-relative path of an indexed file, as search hits report it.")],
        max_tokens: max_tokens_arg(1500) = 1500,
    ) -> CallToolResult:
        result = await client.outline(uri)
        found = result["definitions"]
        depth = {d["qualname"]: 0 for d in found}
        lines = []
        for d in found:
            parent_depth = depth.get(d["qualname"].rpartition(".")[0])
            depth[d["qualname"]] = 0 if parent_depth is None else parent_depth + 1
            lines.append(f"{'  ' * depth[d['qualname']]}{d['start_line']}-{d['end_line']}  {d['kind']} {d['name']}")
        header = f"{result['uri']}: {len(found)} definition{'s' if len(found) != 1 else ''}" + ("" if found else " (none found: not an AST language, or no definitions)")
        text, shown = render_list(header, lines, max_tokens)
        return _result(text, {"uri": result["uri"], "definitions": found[:shown], "total": len(found)})

    # -- reading --------------------------------------------------------------------------------
    async def get_chunk(
        uri: Annotated[str, Field(min_length=1, max_length=4096, description="Repository-relative path of an indexed file, as search hits report it (e.g. 'src/app/config.py').")],
        start_line: Annotated[int | None, Field(ge=1, description="First line of interest (1-based); omit for the start of the file.")] = None,
        end_line: Annotated[int | None, Field(ge=1, description="Last line of interest (inclusive); omit for the end of the file.")] = None,
        max_tokens: max_tokens_arg(3000) = 3000,
    ) -> CallToolResult:
        if start_line is not None and end_line is not None and end_line < start_line:
            raise InputError(f"end_line {end_line} is before start_line {start_line}")
        result = await client.chunks(uri, start_line, end_line)
        chunks = result["chunks"]
        span = f"lines {start_line or 1}-{end_line or 'end'}"
        header = f"{result['uri']}: {len(chunks)} indexed chunk{'s' if len(chunks) != 1 else ''} overlapping {span}"
        if result.get("truncated"):
            header += f" (first {len(chunks)} only: narrow the range)"
        if not chunks:
            header += "\n(no chunk overlaps that range; read_file shows live lines)"
        text, shown = render_chunks(chunks, max_tokens, header)
        return _result(text, {"uri": result["uri"], "chunks": shown, "truncated": bool(result.get("truncated"))})

    async def read_file(
        uri: Annotated[str, Field(min_length=1, max_length=4096, description="Repository-relative path of an indexed file, as search hits report it.")],
        start: Annotated[int, Field(ge=1, description="First line to return (1-based, default 1).")] = 1,
        end: Annotated[int | None, Field(ge=1, description="Last line to return (inclusive); omit to read to the end (at most 2000 lines per call).")] = None,
        max_tokens: max_tokens_arg(4000) = 4000,
    ) -> CallToolResult:
        if end is not None and end < start:
            raise InputError(f"end {end} is before start {start}")
        result = await client.file(uri, start, end)
        header = f"{result['uri']} ({result['total_lines']} lines)"
        text, last = render_lines(result["lines"], result["start_line"], max_tokens, header)
        more = last < (end if end is not None else result["total_lines"]) and last < result["total_lines"]
        if more:
            text += f"\n... shown {result['start_line']}-{last}; continue with read_file(uri={result['uri']!r}, start={last + 1})"
        return _result(text, {"uri": result["uri"], "start": result["start_line"], "end": last, "total_lines": result["total_lines"],
                              "more": more, "lines": result["lines"][: max(0, last - result["start_line"] + 1)]})

    # -- session scope --------------------------------------------------------------------------
    async def set_scope(
        ctx: Context,
        include: Include = [],
        exclude: Exclude = [],
        languages: Languages = [],
    ) -> CallToolResult:
        if not (include or exclude or languages):
            raise InputError("give at least one of include, exclude, languages (clear_scope removes the scope)")
        result = await client.put_scope({"include": include, "exclude": exclude, "languages": languages}, sessions.for_context(ctx))
        scope = result["scope"]
        return _result(f"scope set for this session: {_scope_text(scope)}; search_code and answer now search only there "
                       "unless a call passes its own include/exclude/languages", {"scope": scope})

    async def get_scope(ctx: Context) -> CallToolResult:
        scope = await client.get_scope(sessions.for_context(ctx))
        text = f"session scope: {_scope_text(scope)}" if scope else "no scope set: searches cover the whole index"
        return _result(text, {"scope": scope})

    async def clear_scope(ctx: Context) -> CallToolResult:
        had = await client.delete_scope(sessions.for_context(ctx))
        return _result("scope cleared: searches cover the whole index" if had else "no scope was set: searches cover the whole index", {"cleared": had})

    # -- the index ------------------------------------------------------------------------------
    async def index_status() -> CallToolResult:
        ready = await client.readiness()
        if ready.get("mode") == "down":
            raise ServiceError("codeintel service is down: " + ("; ".join(ready.get("reasons") or []) or "no reason given"), 503, "Service down")
        status = await client.status()
        info = status["index"]
        live = await anyio.to_thread.run_sync(_live_commit, info["root"]) if info.get("root") else None
        fresh = {"built_at": info.get("built_at"), "age_s": _age(info.get("built_at")), "indexed_commit": info.get("commit"),
                 "live_commit": live, "stale": None if live is None or info.get("commit") is None else live != info["commit"]}
        repo = {"name": info["repo"], "root": info.get("root"), "commit": info.get("commit"), "files": info.get("files"),
                "chunks": info.get("chunks"), "version": info.get("version")}
        vectors = sum(s.get("vectors", 0) for s in status.get("shards", []))
        data = {"mode": ready.get("mode"), "reasons": ready.get("reasons", []), "repos": [repo], "freshness": fresh,
                "dense_vectors": vectors, "lexical_docs": info.get("lexical_docs"),
                "embedding": (info.get("contract") or {}).get("model_id")}
        commit = f"@{repo['commit'][:12]}" if repo["commit"] else " (not a git checkout)"
        lines = [f"mode: {data['mode']}" + (f" ({'; '.join(data['reasons'])})" if data["reasons"] else ""),
                 f"repo: {repo['name']}{commit} at {repo['root']}: {repo['files']} files, {repo['chunks']} chunks "
                 f"(version {repo['version']}, {vectors} vectors, {data['lexical_docs']} lexical docs)",
                 f"built: {fresh['built_at']}" + (f" ({fresh['age_s'] / 3600:.1f} h ago)" if fresh["age_s"] is not None else "")]
        if fresh["stale"]:
            lines.append(f"stale: the checkout is at {live[:12]}, the index at {str(info['commit'])[:12]}; run reindex")  # type: ignore[index]
        elif fresh["stale"] is False:
            lines.append("fresh: the index matches the checkout's HEAD commit (uncommitted edits are not seen until reindex)")
        return _result("\n".join(lines), data)

    async def reindex(
        ctx: Context,
        rebuild: Annotated[bool, Field(description="Ignore the previous index version and build from scratch (recovers a damaged index); slower.")] = False,
    ) -> CallToolResult:
        progress = _Progress(ctx)
        try:
            job = await client.start_reindex(rebuild)
        except ServiceError as exc:
            if exc.status in (404, 405) and exc.detail in ("Not Found", "Method Not Allowed"):
                raise ServiceError("this codeintel server has no reindex endpoint (POST /v1/reindex); "
                                   "run `codeintel index PATH --index DIR` where the server's index lives", exc.status, exc.title) from None
            raise
        job_id = job["job_id"]
        await progress(f"reindex job {job_id} started")
        deadline = time.monotonic() + reindex_wait_s
        last = None
        while job.get("state") == "running":
            if time.monotonic() > deadline:
                return _result(f"reindex job {job_id} is still running ({job.get('stage')}); check index_status later", job)
            await asyncio.sleep(poll_s)
            job = await client.reindex_job(job_id)
            note = (job.get("stage"), job.get("done"), job.get("total"))
            if note != last:
                last = note
                await progress(f"{job.get('stage') or 'working'}: {job.get('done')}/{job.get('total')}")
        if job.get("state") == "failed":
            raise ServiceError(f"reindex job {job_id} failed: {job.get('error') or 'no reason given'}")
        summary = job.get("summary") or {}
        keys = ("repo", "version", "files", "changed_files", "removed_files", "chunks", "new_chunks", "removed_chunks", "embedded", "up_to_date", "seconds")
        text = f"reindex {job_id} done: " + ", ".join(f"{k_}={summary[k_]}" for k_ in keys if k_ in summary) if summary else f"reindex {job_id} done"
        return _result(text, job)

    async def estimate_index(
        path: Annotated[str, Field(min_length=1, max_length=4096, description="Repository checkout or folder on this machine (relative to this MCP server's working directory).")],
    ) -> CallToolResult:
        from codeintel.indexing.pipeline import describe_dry_run

        report = await anyio.to_thread.run_sync(partial(_estimate, path, index_dir or await _served_index(client), config))

        data = {k_: getattr(report, k_) for k_ in ("repo", "commit", "index", "files", "changed_files", "removed_files", "new_chunks",
                                                    "reused_embeddings", "skipped", "estimated_seconds", "chunks_by_directory")}
        data["to_embed"] = report.new_chunks - report.reused_embeddings
        against = (f"compared with the index at {report.index} (version {report.version})" if report.version
                   else f"no index at {report.index}: estimated as a fresh build")
        return _result("\n".join(describe_dry_run(report)) + "\n  " + against, data)

    tools = {
        "search_code": (search_code, READ_ONLY, (
            "Search the indexed repository for code relevant to a question, identifiers (`getLogger` also matches "
            "'get logger'), an error message or a pasted traceback. Returns ranked hits as `[n] path:start-end  symbol  "
            "score=` each followed by the chunk's code, cut to fit max_tokens. Start here to find where something is "
            "implemented, then read around a hit with get_chunk or read_file. include/exclude/languages scope this call "
            "only and replace the session scope (set_scope); leave all three empty to use the session scope.")),
        "answer": (answer, READ_ONLY, (
            "Answer a question about the indexed code from retrieved passages, citing them as [n]. Slower than "
            "search_code (it runs retrieval plus generation; progress notifications report each stage). Returns the "
            "answer and the numbered sources `path:start-end`, marking which were cited. Verify important claims by "
            "reading the cited lines. Scope arguments work as in search_code.")),
        "find_definition": (find_definition, READ_ONLY, (
            "Where a symbol is defined, from the code graph built at index time: `path:start-end  kind qualified.name` "
            "per definition (classes and functions first, non-test code first). Give a bare name or a qualified one "
            "(`Class.method`, `package.module.function`). Exact and fast; use search_code when you only know what it does.")),
        "find_references": (find_references, READ_ONLY, (
            "Where a symbol's name is called, imported or subclassed: `path:line  kind in enclosing.definition | source line`, "
            "in file order. Matched by name, not by type, so same-named methods of other classes appear too: check the "
            "enclosing definition. Scope arguments work as in search_code.")),
        "file_outline": (file_outline, READ_ONLY, (
            "The definitions of one indexed file (classes, functions, methods, nested), with their line ranges, in "
            "file order: a map of the file before reading it with get_chunk or read_file.")),
        "get_chunk": (get_chunk, READ_ONLY, (
            "The indexed chunks (functions, classes, sections, with their symbol) of one indexed file overlapping "
            "start_line..end_line, in line order. Use it to expand a search hit to its whole definition. Only files "
            "of the index are served; the uri is repository-relative exactly as hits report it.")),
        "read_file": (read_file, READ_ONLY, (
            "Read lines start..end of an indexed file as it is on disk now, numbered (at most 2000 lines per call; "
            "the result says where to continue). Only files of the index, inside the repository root, are served: no "
            "absolute paths, no '..'. Use it for exact current text around a hit.")),
        "set_scope": (set_scope, ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False), (
            "Restrict every later search_code and answer call of this MCP session to paths matching include, not "
            "matching exclude, in the given languages (replaces any previous scope). Handy when working in one "
            "package or language. A call's own include/exclude/languages still override it for that call.")),
        "get_scope": (get_scope, READ_ONLY, "The scope this MCP session's searches are restricted to (set_scope), or none."),
        "clear_scope": (clear_scope, ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
                        "Remove this MCP session's scope: later searches cover the whole index again."),
        "index_status": (index_status, READ_ONLY, (
            "What is indexed and how healthy the service is: repository name, root, commit, files, chunks, index "
            "version, build time and freshness (stale when the checkout's HEAD moved past the indexed commit), and "
            "mode: ready, degraded (some retriever or the answer model is down; results may be weaker) with reasons. "
            "An error when the service is down or unreachable.")),
        "reindex": (reindex, ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False), (
            "Incrementally re-index the indexed repository on the server after code changed (only changed files are "
            "re-chunked and re-embedded; the new version is swapped in atomically, searches keep working). Reports "
            "progress notifications while it runs and returns a summary (files changed, chunks added/removed, seconds). "
            "Use estimate_index first when unsure how long it takes.")),
        "estimate_index": (estimate_index, ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False), (
            "Dry run of indexing a folder or checkout: files, files new or changed since the served index, chunks "
            "to write and to embed, skipped files by reason, and an estimated time. Writes nothing. Runs in this MCP "
            "server's process, so the path is on this machine.")),
    }
    assert tuple(tools) == TOOL_NAMES

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[dict]:
        try:
            yield {}
        finally:
            await client.aclose()

    built = [strict_tool(fn, description, annotations) for fn, annotations, description in tools.values()]
    server = StrictMCPServer(name="codeintel", title="codeintel code search", instructions=INSTRUCTIONS, version=_version(),
                           tools=built, lifespan=lifespan, log_level="WARNING")
    server.accepted = {t.name: list(t.parameters.get("properties", {})) for t in built}
    return server


def _version() -> str:
    from codeintel import __version__

    return __version__


def _estimate(path: str, index_dir: str | None, config: str | None):
    """``codeintel index PATH --dry-run`` (the same Indexer run), against ``index_dir`` or ./.codeintel."""
    from codeintel.config import load_settings
    from codeintel.indexing.pipeline import Indexer

    return Indexer(load_settings(config)).run(path, index_dir or ".codeintel", dry_run=True)


async def _served_index(client: CodeIntelClient) -> str | None:
    """The index directory the service serves, when this machine has it (its version dir is INDEX/versions/V)."""
    try:
        index = Path((await client.status())["index"]["path"]).parent.parent
    except (ServiceError, KeyError, TypeError):  # unreachable or not ours: estimate against ./.codeintel
        return None
    return str(index) if (index / "CURRENT").is_file() else None


def serve(url: str = DEFAULT_URL, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8001,
          index_dir: str | None = None, config: str | None = None) -> None:
    """Run until the client hangs up (stdio) or the process is stopped (streamable HTTP at /mcp)."""
    server = build_server(url, index_dir, config)
    if transport == "stdio":
        server.run("stdio")
    else:
        import sys

        print(f"codeintel MCP server at http://{host}:{port}/mcp (streamable HTTP), forwarding to {url}", file=sys.stderr, flush=True)
        server.run("streamable-http", host=host, port=port)
