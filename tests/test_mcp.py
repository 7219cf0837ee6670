"""The MCP server: closed schemas, compact results, HTTP failures as tool errors, and `codeintel mcp`
driven over stdio by the SDK's own client against the real Serve app."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from codeintel.errors import ServiceError
from codeintel.mcp import TOOL_NAMES, build_server
from codeintel.mcp.http import CodeIntelClient
from codeintel.mcp.render import CHARS_PER_TOKEN, render_hits, render_lines
from conftest import SERVE_STATE as STATE

ROOT = Path(__file__).resolve().parents[1]


def text(result) -> str:
    return "\n".join(c.text for c in result.content)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- compaction -------------------------------------------------------------------------------------
HITS = [{"uri": f"pkg/m{i}.py", "start_line": 10 * i + 1, "end_line": 10 * i + 40, "symbol": f"f{i}", "score": 1 / (i + 1),
         "text": "\n".join(f"    line {j} of hit {i} " + "x" * 40 for j in range(40))} for i in range(10)]


@pytest.mark.parametrize("max_tokens", [100, 300, 2000, 20_000])
def test_hits_keep_locations_and_fit_the_budget(max_tokens):
    out, shown = render_hits(HITS, max_tokens, "10 hits")
    assert len(out) <= max_tokens * CHARS_PER_TOKEN
    assert out.startswith("10 hits\n[1] pkg/m0.py:1-40  f0  score=1.000")
    assert [h["uri"] for h in shown] == [h["uri"] for h in HITS[: len(shown)]]
    for hit in shown:  # code is cut at whole lines, and the cut is counted
        assert hit["text"] == "\n".join(hit["text"].split("\n")) and hit["omitted_lines"] == 40 - (len(hit["text"].split("\n")) if hit["text"] else 0)
    if max_tokens >= 300:
        assert len(shown) == 10 and all(f"pkg/m{i}.py:" in out for i in range(10))
    if max_tokens == 20_000:
        assert all(h["omitted_lines"] == 0 for h in shown)
    if max_tokens == 100:
        assert len(shown) < 10 and "more hits not shown" in out


def test_lines_are_numbered_and_say_where_they_stop():
    out, last = render_lines([f"row {i}" for i in range(1, 1001)], 1, 200, "f.py (1000 lines)")
    assert out.startswith("f.py (1000 lines)\n   1  row 1\n   2  row 2") and 50 < last < 1000
    assert len(out) <= 200 * CHARS_PER_TOKEN and out.endswith(f"{last}  row {last}")
    out, last = render_lines(["y" * 5000], 7, 100, "long.min.js")
    assert last == 7 and "line cut" in out and len(out) <= 100 * CHARS_PER_TOKEN + 40


# -- the HTTP client ---------------------------------------------------------------------------------
def test_http_failures_become_one_service_error():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/search":
            return httpx.Response(400, json={"type": "about:blank", "title": "Bad request", "status": 400, "detail": "unknown language 'klingon'"},
                                  headers={"content-type": "application/problem+json"})
        if request.url.path == "/readyz":
            return httpx.Response(503, json={"mode": "down", "reasons": ["index unreadable"], "checks": {}})
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    async def main():
        client = CodeIntelClient("http://svc", transport=httpx.MockTransport(handler))
        with pytest.raises(ServiceError) as err:
            await client.search({"query": "x"}, "s1")
        assert (err.value.status, err.value.title, err.value.detail) == (400, "Bad request", "unknown language 'klingon'")
        assert str(err.value) == "Bad request (400): unknown language 'klingon'"
        assert (await client.readiness())["mode"] == "down"  # a 503 from /readyz is an answer
        with pytest.raises(ServiceError, match=r"Bad Gateway \(502\): <html>Bad Gateway</html>"):
            await client.status()
        await client.aclose()
        down = CodeIntelClient(f"http://127.0.0.1:{closed_port()}")
        with pytest.raises(ServiceError, match="unreachable .*ConnectError.*codeintel serve"):
            await down.status()
        await down.aclose()

    anyio.run(main)


# -- the server in-process: schemas and argument checks ----------------------------------------------
def test_every_tool_has_a_closed_documented_schema():
    async def main():
        async with Client(build_server(f"http://127.0.0.1:{closed_port()}")) as client:
            return (await client.list_tools()).tools

    tools = anyio.run(main)
    assert [t.name for t in tools] == list(TOOL_NAMES)
    for tool in tools:
        schema = tool.input_schema
        assert schema["type"] == "object" and schema["additionalProperties"] is False, tool.name
        assert len(tool.description) > 60 and all(p.get("description") for p in schema["properties"].values()), tool.name
    search = next(t for t in tools if t.name == "search_code").input_schema
    assert set(search["properties"]) == {"query", "k", "include", "exclude", "languages", "mode", "max_tokens"}
    assert search["required"] == ["query"] and "python" in search["properties"]["languages"]["items"]["enum"]
    assert search["properties"]["mode"]["enum"] == ["dense", "bm25", "hybrid", "hybrid+rerank"]


def test_unknown_and_invalid_arguments_are_errors_naming_them_and_reach_no_backend():
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/v1/scope":
            return httpx.Response(404, json={"title": "Unknown session", "status": 404, "detail": "no scope"})
        return httpx.Response(200, json={"hits": [], "mode": "bm25", "skipped_retrievers": {}})

    async def main():
        async with Client(build_server("http://svc", transport=httpx.MockTransport(handler))) as client:
            unknown = await client.call_tool("search_code", {"query": "x", "filters": {"lang": "go"}, "path": "src"})
            invalid = await client.call_tool("search_code", {"query": "x", "k": 0, "languages": ["klingon"]})
            empty_scope = await client.call_tool("set_scope", {})
            ok = await client.call_tool("search_code", {"query": "x", "mode": "bm25"})
            return unknown, invalid, empty_scope, ok

    unknown, invalid, empty_scope, ok = anyio.run(main)
    assert unknown.is_error and "unknown arguments 'filters', 'path'" in text(unknown) and "accepts: query, k, include" in text(unknown)
    assert invalid.is_error and "k: Input should be greater than or equal to 1" in text(invalid) and "languages.0" in text(invalid)
    assert empty_scope.is_error and "at least one of include, exclude, languages" in text(empty_scope)
    assert not ok.is_error and text(ok).startswith("0 hits (bm25; scope: none)")
    search = next(r for r in requests if r.url.path == "/v1/search")
    assert json.loads(search.content) == {"query": "x", "k": 10, "mode": "bm25"}  # no scope: the session's applies
    assert {r.url.path for r in requests} == {"/v1/search", "/v1/scope"} and len(requests) == 2  # + which session scope applied
    assert len({r.headers["x-session-id"] for r in requests}) == 1 and search.headers["x-session-id"].startswith("mcp-")


def test_cli_rejects_a_bad_url_in_one_line():
    r = subprocess.run([sys.executable, "-m", "codeintel.cli", "mcp", "--url", "ftp://x"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--url must be an http(s) URL" in r.stderr


# -- end to end: `codeintel mcp` over stdio against the real Serve app -------------------------------
def stdio(url: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "codeintel.cli", "mcp", "--url", url], cwd=str(ROOT))


@pytest.mark.integration
def test_stdio_search_read_and_scope(serve_url):
    async def main():
        async with Client(stdio(serve_url)) as client:
            assert [t.name for t in (await client.list_tools()).tools] == list(TOOL_NAMES)
            search = await client.call_tool("search_code", {"query": "read the json configuration file", "k": 3, "max_tokens": 400})
            chunk = await client.call_tool("get_chunk", {"uri": "app/http_client.py", "start_line": 9, "end_line": 10})
            lines = await client.call_tool("read_file", {"uri": "app/config.py", "start": 4, "end": 5})
            await client.call_tool("clear_scope", {})
            no_scope = await client.call_tool("get_scope", {})
            set_ = await client.call_tool("set_scope", {"languages": ["javascript"]})
            got = await client.call_tool("get_scope", {})
            scoped = await client.call_tool("search_code", {"query": "renderPage configure_logging", "k": 3, "mode": "bm25"})
            override = await client.call_tool("search_code", {"query": "configure logging", "k": 3, "mode": "bm25", "include": ["app/"]})
            cleared = await client.call_tool("clear_scope", {})
            status = await client.call_tool("index_status", {})
            estimate = await client.call_tool("estimate_index", {"path": str(STATE["repo"])})
            return search, chunk, lines, no_scope, set_, got, scoped, override, cleared, status, estimate

    search, chunk, lines, no_scope, set_, got, scoped, override, cleared, status, estimate = anyio.run(main)
    for result in (search, chunk, lines, no_scope, set_, got, scoped, override, cleared, status, estimate):
        assert not result.is_error, text(result)
    assert text(search).startswith("3 hits (hybrid; scope: none)") and "[1] app/config.py:" in text(search) and "load_config" in text(search)
    assert len(text(search)) <= 400 * CHARS_PER_TOKEN
    assert search.structured_content["hits"][0]["uri"] == "app/config.py" and search.structured_content["total_hits"] == 3
    assert "send_request" in text(chunk) and all(c["uri"] == "app/http_client.py" for c in chunk.structured_content["chunks"])
    assert text(lines) == "app/config.py (7 lines)\n4  def load_config(path):\n5      \"\"\"Read the JSON configuration file.\"\"\""
    assert lines.structured_content["lines"][0] == "def load_config(path):"
    assert no_scope.structured_content == {"scope": None} and "no scope set" in text(no_scope)
    assert got.structured_content["scope"]["languages"] == ["javascript"]
    assert {h["uri"] for h in scoped.structured_content["hits"]} == {"web/main.js"}  # the session scope applied
    assert "scope: languages=javascript (session)" in text(scoped) and "scope: include=app/ (this call)" in text(override)
    assert {h["uri"] for h in override.structured_content["hits"]} <= {"app/logging_setup.py", "app/config.py", "app/http_client.py"}
    assert cleared.structured_content == {"cleared": True}
    data = status.structured_content
    assert data["mode"] == "ready" and data["repos"][0]["chunks"] > 0 and data["repos"][0]["files"] >= 5
    assert data["freshness"]["built_at"] and data["dense_vectors"] == data["repos"][0]["chunks"]
    assert estimate.structured_content["index"] == str(STATE["index"])  # compared with the served index
    assert estimate.structured_content["files"] >= 5 and text(estimate).startswith("dry run: repo: ")


@pytest.mark.integration
def test_stdio_graph_tools_find_definitions_references_and_outlines(serve_url):
    async def main():
        async with Client(stdio(serve_url)) as client:
            return [await client.call_tool(name, args) for name, args in (
                ("find_definition", {"symbol": "HttpClient.send_request"}),
                ("find_references", {"symbol": "getLogger"}),
                ("file_outline", {"uri": "app/http_client.py"}),
                ("find_definition", {"symbol": "renderPage", "languages": ["python"]}),
                ("file_outline", {"uri": "app/nowhere.py"}),
            )]

    definition, references, outline, scoped_out, unknown = anyio.run(main)
    for result in (definition, references, outline, scoped_out):
        assert not result.is_error, text(result)
    assert text(definition) == "1 definition of 'HttpClient.send_request'\napp/http_client.py:8-14  method app.http_client.HttpClient.send_request"
    assert text(references) == ("1 reference to 'getLogger' (calls, imports, subclasses, matched by name)\n"
                                "app/logging_setup.py:6  call in app.logging_setup.configure_logging  | logger = logging.getLogger(__name__)")
    assert text(outline) == ("app/http_client.py: 3 definitions\n1-14  class HttpClient\n  4-6  method __init__\n  8-14  method send_request")
    assert scoped_out.structured_content["total"] == 0  # the call's scope applied
    assert unknown.is_error and "not a file of the index" in text(unknown)


@pytest.mark.integration
def test_stdio_answer_streams_progress_and_cites(serve_url):
    notes: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, message))

    async def main():
        async with Client(stdio(serve_url)) as client:
            return await client.call_tool("answer", {"question": "how is logging configured", "k": 3}, progress_callback=on_progress)

    result = anyio.run(main)
    assert not result.is_error, text(result)
    data = result.structured_content
    assert data["complete"] and data["model"] == "extractive" and data["citations"] and len(data["trace_id"]) == 32
    cited = data["citations"][0]
    assert f"[{cited['n']}] {cited['uri']}:{cited['start_line']}-{cited['end_line']}" in text(result)
    assert "Sources:" in text(result) and "app/logging_setup.py" in text(result)
    assert notes and [p for p, _ in notes] == sorted({p for p, _ in notes})  # strictly increasing
    messages = [m for _, m in notes]
    assert any(m.startswith("retrieved 3 sources") for m in messages) and any(m.startswith("cites [") for m in messages) and messages[-1] == "done"


@pytest.mark.integration
def test_stdio_errors_are_tool_errors_and_the_server_survives(serve_url):
    async def main():
        async with Client(stdio(serve_url)) as client:
            results = {
                "unknown": await client.call_tool("get_chunk", {"uri": "app/config.py", "lines": "1-9"}),
                "traversal": await client.call_tool("read_file", {"uri": "../../etc/passwd"}),
                "absolute": await client.call_tool("read_file", {"uri": "/etc/passwd"}),
                "not_indexed": await client.call_tool("get_chunk", {"uri": "app/nope.py"}),
                "bad_glob": await client.call_tool("search_code", {"query": "x", "include": ["src/[oops"]}),
                "no_path": await client.call_tool("estimate_index", {"path": "/does/not/exist"}),
            }
            results["after"] = await client.call_tool("get_scope", {})
            return results

    r = anyio.run(main)
    assert r["unknown"].is_error and "unknown argument 'lines'" in text(r["unknown"])
    assert r["traversal"].is_error and "Bad request (400)" in text(r["traversal"]) and "'..'" in text(r["traversal"])
    assert r["absolute"].is_error and "absolute" in text(r["absolute"]) and "root:" not in text(r["absolute"])
    assert r["not_indexed"].is_error and "Not indexed (404)" in text(r["not_indexed"])
    assert r["bad_glob"].is_error and "malformed glob" in text(r["bad_glob"])
    assert r["no_path"].is_error and "path does not exist: /does/not/exist" in text(r["no_path"])
    assert not r["after"].is_error


@pytest.mark.integration
def test_stdio_down_and_degraded_backends():
    async def down():
        async with Client(stdio(f"http://127.0.0.1:{closed_port()}")) as client:
            results = [await client.call_tool(name, args) for name, args in
                       [("search_code", {"query": "x"}), ("index_status", {}), ("answer", {"question": "why"}), ("set_scope", {"include": ["a/"]})]]
            return results, await client.list_tools()

    results, tools = anyio.run(down)
    for result in results:
        assert result.is_error and "is unreachable (ConnectError)" in text(result), text(result)
    assert len(tools.tools) == len(TOOL_NAMES)  # still serving after every call failed


@pytest.mark.integration
def test_stdio_degraded_backend_says_so(serve_url):
    async def main():
        async with Client(stdio(serve_url + "/faulty")) as client:
            return await client.call_tool("index_status", {}), await client.call_tool("search_code", {"query": "json configuration", "k": 2, "mode": "hybrid"})

    status, search = anyio.run(main)
    assert not status.is_error and status.structured_content["mode"] == "degraded"
    assert "lexical retriever down" in text(status)
    assert not search.is_error and "degraded, skipped: bm25" in text(search) and search.structured_content["hits"]


@pytest.mark.integration
def test_stdio_down_index_is_an_error_with_the_reasons(serve_url):
    async def main():
        async with Client(stdio(serve_url + "/mismatch")) as client:
            return await client.call_tool("index_status", {})

    status = anyio.run(main)
    assert status.is_error and "codeintel service is down" in text(status) and "dimension mismatch" in text(status)


@pytest.mark.integration
def test_stdio_reindex_reports_progress_and_a_summary(serve_url):
    notes: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append(message)

    async def main():
        async with Client(stdio(serve_url)) as client:
            ok = await client.call_tool("reindex", {}, progress_callback=on_progress)
            outside = await client.call_tool("reindex", {"path": "/"})  # reindexing part of a repository is not offered
            return ok, outside

    ok, outside = anyio.run(main)
    if ok.is_error and "no reindex endpoint" in text(ok):  # the server answered 404 for POST /v1/reindex
        pytest.skip("the server has no POST /v1/reindex route yet")
    assert not ok.is_error, text(ok)
    assert ok.structured_content["state"] == "done" and ok.structured_content["summary"] and text(ok).startswith("reindex ")
    assert notes and notes[0].startswith("reindex job ")
    assert outside.is_error and "path" in text(outside)
