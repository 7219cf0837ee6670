"""Integration: the real Serve graph on a local Ray, driven over HTTP (one cluster per test session)."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from codeintel.retrieval.query import MAX_QUERY_CHARS
from conftest import SERVE_STATE as STATE, SMALL_REPO
from helpers_sse import iter_sse_events, sse_events

pytestmark = pytest.mark.integration

@pytest.fixture
def client(serve_url):
    with httpx.Client(base_url=serve_url, timeout=60) as c:
        yield c


def test_search_returns_correct_hits_with_timings(client):
    r = client.post("/v1/search", json={"query": "read the json configuration file", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hits"][0]["uri"] == "app/config.py" and body["mode"] == "hybrid"  # the default: no cross-encoder
    assert {"embed", "dense", "bm25", "fuse", "hydrate", "total"} <= set(body["timings_ms"]) and "rerank" not in body["timings_ms"]
    assert body["skipped_retrievers"] == {}
    for mode in ("dense", "bm25", "hybrid+rerank"):
        assert client.post("/v1/search", json={"query": "HttpClient send_request", "k": 2, "mode": mode}).json()["hits"][0]["uri"] == "app/http_client.py"


def test_answer_streams_server_sent_events(client):
    with client.stream("POST", "/v1/answer", json={"query": "how is logging configured", "k": 3}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        parsed = sse_events(r)
    kinds = [k for k, _ in parsed]
    assert kinds[0] == "hit" and kinds[-1] == "done" and "token" in kinds and "citation" in kinds
    citation = next(d for k, d in parsed if k == "citation")
    assert citation["uri"] in SMALL_REPO and citation["start_line"] >= 1
    done = next(d for k, d in parsed if k == "done")
    assert len(done["trace_id"]) == 32 and done["cited"] and done["unknown_citations"] == 0
    assert done["usage"]["tokens_out"] >= 1 and done["usage"]["ttft_ms"] is not None
    # the trace row lands in the Parquet dataset, written off the request path
    from codeintel.answer.traces import read_traces

    deadline = time.time() + 15
    rows = []
    while time.time() < deadline and not any(r["trace_id"] == done["trace_id"] for r in rows):
        time.sleep(0.5)
        rows = read_traces(STATE["traces"], last=50)
    row = next(r for r in rows if r["trace_id"] == done["trace_id"])
    assert row["query"] == "how is logging configured" and row["model_id"] == "extractive" and row["tokens_out"] >= 1


def flip_scopes(client, prefix: str, session: str, flips: int = 40) -> list[str]:
    """Set, change and clear a session's scope ``flips`` times, searching right after each: the
    searches that did not honour the scope just written."""
    headers = {"X-Session-ID": session}
    body = {"query": "renderPage configure_logging", "k": 5, "mode": "bm25"}
    stale = []
    for n in range(flips):
        want = ("python", "javascript", None)[n % 3]
        if want is None:
            assert client.delete(f"{prefix}/v1/scope", headers=headers).status_code == 204
        else:
            assert client.put(f"{prefix}/v1/scope", json={"languages": [want]}, headers=headers).status_code == 200
        r = client.post(f"{prefix}/v1/search", json=body, headers=headers)
        assert r.status_code == 200, r.text
        langs = {h["lang"] for h in r.json()["hits"]}
        if (langs != {want}) if want else not {"python", "javascript"} <= langs:
            stale.append(f"flip {n}: wanted {want or 'no scope'}, got {sorted(langs)}")
    return stale


def test_a_scope_written_through_any_replica_applies_to_the_next_request(client):
    """Two ingress replicas: every search right after a scope change honours it (no replica-local copy)."""
    assert flip_scopes(client, "", "flipper") == []
    headers = {"X-Session-ID": "flipper"}
    client.put("/v1/scope", json={"languages": ["javascript"]}, headers=headers)
    assert client.get("/v1/scope", headers=headers).json()["scope"]["languages"] == ["javascript"]
    explicit = client.post("/v1/search", json={"query": "configure_logging", "k": 3, "mode": "bm25", "scope": {}}, headers=headers).json()
    assert explicit["hits"][0]["uri"] == "app/logging_setup.py" and explicit["scope"] == {"include": [], "exclude": [], "languages": []}


@pytest.fixture(scope="module")
def redis_app(serve_url, redis_url):
    """The main graph again with its session scopes on a real redis-server (2 ingress replicas)."""
    import msgspec
    from ray import serve

    from deployments.app import build_graph

    serve.run(build_graph(msgspec.structs.replace(STATE["args"], scope_backend=redis_url)), name="redis", route_prefix="/redis")
    try:
        yield "/redis"
    finally:
        serve.delete("redis")


def test_redis_scopes_read_their_own_writes_across_replicas(client, redis_app):
    assert client.get(f"{redis_app}/readyz").json()["checks"]["scope_store"]["ok"]
    assert flip_scopes(client, redis_app, "redis-flipper") == []


@pytest.mark.parametrize(
    "method, path, kwargs, status, needle",
    [
        ("post", "/v1/search", {"json": {"query": "x", "k": 0}}, 422, "k"),
        ("post", "/v1/search", {"json": {"query": "x", "colour": "red"}}, 422, "colour: unknown field"),
        ("post", "/v1/search", {"json": {"query": "x" * (MAX_QUERY_CHARS + 1)}}, 422, "query"),
        ("post", "/v1/search", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, ""),
        ("post", "/v1/search", {"json": {"query": "x", "scope": {"languages": ["klingon"]}}}, 400, "klingon"),
        ("post", "/v1/search", {"json": {"query": "x", "scope": {"include": ["src/[oops"]}}}, 400, "malformed glob"),
        ("get", "/v1/scope", {"headers": {"X-Session-ID": "nobody"}}, 404, "nobody"),
        ("delete", "/v1/scope", {"headers": {"X-Session-ID": "nobody"}}, 404, "nobody"),
        ("put", "/v1/scope", {"json": {"languages": ["python"]}}, 422, "x-session-id"),
    ],
)
def test_problem_details(client, method, path, kwargs, status, needle):
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and needle in body["detail"]


def test_ready_status_metrics_and_docs(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["mode"] == "ready", ready.json()
    assert ready.json()["checks"]["dimensions"] == {"ok": True, "embedder": 384, "parquet": 384, "faiss_shard_0": 384}
    status = client.get("/v1/status").json()
    assert status["index"]["chunks"] > 0 and status["index"]["contract"]["dim"] == 384
    assert client.get("/healthz").json() == {"status": "ok"}
    client.post("/faulty/v1/search", json={"query": "logging", "k": 1})  # one ingress replica: its /metrics saw it
    metrics = client.get("/faulty/metrics").text
    assert "codeintel_stage_seconds_bucket" in metrics and "codeintel_requests_total" in metrics
    # each back end's calls go out coalesced; how many each carried is there for operators to see
    assert 'codeintel_backend_batch_calls_count{backend="hydrator"}' in metrics and 'codeintel_backend_batch_calls_count{backend="embedder"}' in metrics
    assert client.get("/openapi.json").json()["paths"]["/v1/search"]


def test_metrics_count_every_request_with_its_real_status(client):
    """The faulty app has one ingress replica, so its /metrics sees every request sent to it."""
    assert client.post("/faulty/v1/search", json={"query": "x", "k": 0}).status_code == 422
    assert client.post("/faulty/v1/search", json={"query": "x", "scope": {"languages": ["klingon"]}}).status_code == 400
    with client.stream("POST", "/faulty/v1/answer", json={"query": "x", "k": 1, "mode": "bm25"}) as r:
        events = sse_events(r)
    assert events[-1][0] == "error" and events[-1][1]["status"] == 503  # its only retriever fails
    metrics = client.get("/faulty/metrics").text
    for endpoint, status in (("/v1/search", 422), ("/v1/search", 400), ("/v1/answer", 503)):
        assert f'codeintel_requests_total{{endpoint="{endpoint}",status="{status}"}}' in metrics, (endpoint, status)


def test_failing_retriever_degrades_but_answers(client):
    ready = client.get("/faulty/readyz")
    assert ready.status_code == 200 and ready.json()["mode"] == "degraded"
    assert "lexical retriever down" in ready.json()["reasons"]
    r = client.post("/faulty/v1/search", json={"query": "read the json configuration file", "k": 3, "mode": "hybrid"})
    assert r.status_code == 200
    body = r.json()
    assert body["skipped_retrievers"]["bm25"].startswith("error") and body["hits"][0]["uri"] == "app/config.py"


def wait_for_trace(predicate, timeout_s: float = 20.0) -> dict:
    from codeintel.answer.traces import read_traces

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        rows = [r for r in read_traces(STATE["traces"], last=100) if predicate(r)]
        if rows:
            return rows[0]
        time.sleep(0.5)
    raise AssertionError("no matching trace row was written")


def test_failing_retriever_gives_a_complete_llm_answer_with_the_fallback_traced(client):
    body = {"query": "how is the json configuration file read", "k": 3, "mode": "hybrid"}
    with client.stream("POST", "/faulty/v1/answer", json=body) as r:
        assert r.status_code == 200
        events = sse_events(r)
    kinds = [k for k, _ in events]
    assert kinds[0] == "hit" and "token" in kinds and kinds[-1] == "done", kinds
    done = events[-1][1]
    assert done["mode"].startswith("Qwen/") and done["fallbacks"] == ["bm25"]
    assert done["usage"]["tokens_in"] > 100 and done["usage"]["tokens_out"] > 0
    # cited by construction: every [n] names a hit, and each citation lies within that file's hit lines
    # (hits of one file that touch are merged into one source under the first one's number)
    hits = {d["n"]: d for k, d in events if k == "hit"}
    text = "".join(d["text"] for k, d in events if k == "token")
    assert {int(n) for n in re.findall(r"\[(\d+)\]", text)} <= set(hits), text
    for c in (d for k, d in events if k == "citation"):
        same_file = [h for h in hits.values() if h["uri"] == c["uri"]]
        assert hits[c["n"]]["uri"] == c["uri"], (c, hits)
        assert min(h["start_line"] for h in same_file) <= c["start_line"] <= c["end_line"] <= max(h["end_line"] for h in same_file)
    row = wait_for_trace(lambda r: r["trace_id"] == done["trace_id"])
    assert row["fallbacks"] == ["bm25"] and row["error"] is None and row["model_id"] == done["mode"]
    assert row["tokens_in"] == done["usage"]["tokens_in"] and row["model_params"]["max_new_tokens"] > 0
    assert row["retriever_ids"]["dense"] and "bm25" not in row["retriever_ids"] and len(row["rerank_scores"]) == 3
    assert {"embed", "dense", "hydrate"} <= set(row["stage_ms"]) and row["ttft_ms"] > 0 and row["tps"] > 0
    assert row["budgets"] == {"retrieval_s": 20.0, "generation_s": 120.0} and row["started_at"] < row["ended_at"]


def test_client_disconnect_stops_generation_upstream(client):
    def streams() -> dict:
        return client.get("/faulty/readyz").json()["checks"]["generator"]["streams"]

    before = streams()
    body = {"query": "explain every function in the repository in detail", "k": 5, "mode": "dense"}
    with client.stream("POST", "/faulty/v1/answer", json=body) as r:
        for event, _ in iter_sse_events(r):
            if event == "token":
                break  # leave after the first token: the connection closes here
    deadline = time.time() + 30
    while time.time() < deadline and not (streams()["active"] == 0 and streams()["stopped"] > before["stopped"]):
        time.sleep(0.25)
    after = streams()
    assert after["active"] == 0 and after["stopped"] == before["stopped"] + 1 and after["completed"] == before["completed"], after
    row = wait_for_trace(lambda r: r["error"] == "client disconnected")
    assert 0 < row["tokens_out"] < row["model_params"]["max_new_tokens"]


def test_dimension_mismatch_is_down(client):
    ready = client.get("/mismatch/readyz")
    assert ready.status_code == 503 and ready.json()["mode"] == "down"
    assert any("dimension mismatch" in reason for reason in ready.json()["reasons"])


def test_file_chunks_of_an_indexed_file(client):
    r = client.post("/v1/chunks", json={"uri": "app/http_client.py", "start_line": 9, "end_line": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["uri"] == "app/http_client.py" and body["chunks"] and body["truncated"] is False
    for chunk in body["chunks"]:
        assert chunk["start_line"] <= 10 and chunk["end_line"] >= 9 and chunk["lang"] == "python"
        assert set(chunk) == {"id", "uri", "start_line", "end_line", "symbol", "lang", "text"}
    assert any("send_request" in c["text"] for c in body["chunks"])
    whole = client.post("/v1/chunks", json={"uri": "app/http_client.py"}).json()["chunks"]
    assert [c["start_line"] for c in whole] == sorted(c["start_line"] for c in whole) and len(whole) >= len(body["chunks"])


def test_file_lines_of_the_live_file(client):
    r = client.post("/v1/file", json={"uri": "app/config.py", "start_line": 4, "end_line": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    source = (STATE["repo"] / "app/config.py").read_text().split("\n")
    assert body["lines"] == source[3:5] and body["lines"][0].startswith("def load_config")
    assert (body["start_line"], body["end_line"], body["total_lines"], body["truncated"]) == (4, 5, len(source) - 1, False)
    assert client.post("/v1/file", json={"uri": "./app/config.py"}).json()["lines"][0] == "import json"


def test_file_lines_never_leave_the_repository(client, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    link = STATE["repo"] / "app/leak.py"  # a file swapped for a symlink after indexing: not indexed -> 404
    link.symlink_to(secret)
    try:
        assert client.post("/v1/file", json={"uri": "app/leak.py"}).status_code == 404
    finally:
        link.unlink()
    indexed = STATE["repo"] / "web/main.js"  # an indexed file replaced by a symlink out of the root -> 400
    original = indexed.read_bytes()
    indexed.unlink()
    indexed.symlink_to(secret)
    try:
        r = client.post("/v1/file", json={"uri": "web/main.js"})
        assert r.status_code == 400 and "outside the repository root" in r.json()["detail"] and "secret" not in r.text
    finally:
        indexed.unlink()
        indexed.write_bytes(original)


@pytest.mark.parametrize("route", ["/v1/file", "/v1/chunks"])
@pytest.mark.parametrize(
    "body, status, needle",
    [
        ({"uri": "../../etc/passwd"}, 400, "'..'"),
        ({"uri": "app/../../etc/passwd"}, 400, "'..'"),
        ({"uri": "/etc/passwd"}, 400, "absolute"),
        ({"uri": "app\\config.py"}, 400, "backslash"),
        ({"uri": "app/nope.py"}, 404, "not a file of the index"),
        ({"uri": "app/config.py", "colour": "red"}, 422, "colour: unknown field"),
        ({"uri": "app/config.py", "start_line": 0}, 422, "start_line"),
    ],
)
def test_file_routes_reject_bad_paths_with_problems(client, route, body, status, needle):
    r = client.post(route, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == status and needle in r.json()["detail"]
    assert "root:" not in r.text  # never the content of /etc/passwd


def test_file_lines_range_errors_and_cap(client):
    r = client.post("/v1/file", json={"uri": "app/config.py", "start_line": 500})
    assert r.status_code == 400 and "past the end" in r.json()["detail"]
    r = client.post("/v1/file", json={"uri": "app/config.py", "start_line": 5, "end_line": 4})
    assert r.status_code == 400 and "line range" in r.json()["detail"]


def test_reindex_while_serving_swaps_versions_without_failing_or_mixing(client, serve_url):
    import threading

    before = client.get("/v1/status").json()["index"]["version"]
    (STATE["repo"] / "app" / "reindexed_module.py").write_text("def freshly_reindexed_marker():\n    return 'new'\n")
    outcomes: list[tuple[int, str | None, list[str]]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=serve_url, timeout=60) as c:
            while not stop.is_set():
                r = c.post("/v1/search", json={"query": "freshly_reindexed_marker configure logging", "k": 5, "mode": "hybrid"})
                body = r.json()
                outcomes.append((r.status_code, body.get("version"), [h["uri"] for h in body.get("hits", [])]))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        assert client.post("/v1/reindex", json={"path": "app"}).status_code == 422  # a whole-repository reindex only
        r = client.post("/v1/reindex", json={})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert r.headers["location"] == f"/v1/reindex/{job_id}"
        busy = client.post("/v1/reindex", json={})  # the first job is still loading its embedder
        assert busy.status_code == 409 and job_id in busy.json()["detail"]
        deadline = time.time() + 120
        while (job := client.get(f"/v1/reindex/{job_id}").json())["state"] == "running" and time.time() < deadline:
            time.sleep(0.5)
        assert job["state"] == "done", job
        assert job["summary"]["changed_files"] == 1 and job["summary"]["new_chunks"] >= 1
        after = job["summary"]["version"]
        time.sleep(1.5)  # queries keep running on the new version
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert outcomes and all(status == 200 for status, _, _ in outcomes), {s for s, _, _ in outcomes}
    assert {v for _, v, _ in outcomes} <= {before, after} and outcomes[-1][1] == after
    for _, version, uris in outcomes:  # a result never mixes versions: the new file only with the new version
        assert ("app/reindexed_module.py" in uris) <= (version == after)
    assert "app/reindexed_module.py" in outcomes[-1][2]
    assert client.get("/v1/reindex/nope").status_code == 404


def test_graph_endpoints_answer_by_name_with_scopes_and_problems(client):
    found = client.post("/v1/definitions", json={"symbol": "load_config"}).json()
    assert found["definitions"] == [{"uri": "app/config.py", "name": "load_config", "qualname": "app.config.load_config",
                                     "kind": "function", "start_line": 4, "end_line": 7}]
    routes = client.post("/v1/definitions", json={"symbol": "Router.route"}).json()["definitions"]
    assert [(d["uri"], d["kind"]) for d in routes] == [("web/main.js", "method")]
    uses = client.post("/v1/references", json={"symbol": "json.load", "scope": {"include": ["app/"]}}).json()
    assert [(u["uri"], u["line"], u["kind"]) for u in uses["references"]] == [("app/config.py", 7, "call")] and not uses["truncated"]
    assert client.post("/v1/references", json={"symbol": "load", "scope": {"languages": ["javascript"]}}).json()["references"] == []
    outline = client.post("/v1/outline", json={"uri": "web/main.js"}).json()
    assert [d["name"] for d in outline["definitions"]] == ["renderPage", "Router", "route"]
    missing = client.post("/v1/outline", json={"uri": "app/nowhere.py"})
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    bad = client.post("/v1/definitions", json={"symbol": ""})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    bad_scope = client.post("/v1/references", json={"symbol": "x", "scope": {"include": ["../etc"]}})
    assert bad_scope.status_code == 400, bad_scope.text


def test_the_app_runs_in_serve_high_throughput_mode(client, serve_url):
    """HAProxy holds the HTTP port (no Python proxy hop) and hands requests to the ingress replicas' own servers."""
    import psutil

    assert client.get("/healthz").status_code == 200
    port = httpx.URL(serve_url).port
    listening = {c.pid for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert {psutil.Process(pid).name() for pid in listening} == {"haproxy"}, listening
