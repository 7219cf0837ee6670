"""Integration: the real Serve graph on a local Ray, driven over HTTP (one cluster per test session)."""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

from conftest import SERVE_STATE as STATE, SMALL_REPO

pytestmark = pytest.mark.integration

@pytest.fixture
def client(serve_url):
    with httpx.Client(base_url=serve_url, timeout=60) as c:
        yield c


def test_search_returns_correct_hits_with_timings(client):
    r = client.post("/v1/search", json={"query": "read the json configuration file", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hits"][0]["uri"] == "app/config.py" and body["mode"] == "hybrid+rerank"
    assert {"embed", "dense", "bm25", "fuse", "hydrate", "rerank", "total"} <= set(body["timings_ms"])
    assert body["skipped_retrievers"] == {}
    for mode in ("dense", "bm25", "hybrid"):
        assert client.post("/v1/search", json={"query": "HttpClient send_request", "k": 2, "mode": mode}).json()["hits"][0]["uri"] == "app/http_client.py"


def test_answer_streams_server_sent_events(client):
    events = []
    with client.stream("POST", "/v1/answer", json={"query": "how is logging configured", "k": 3}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for block in r.iter_text():
            events.append(block)
    text = "".join(events)
    parsed = [(b.split("\n")[0].removeprefix("event: "), json.loads(b.split("\n")[1].removeprefix("data: "))) for b in text.strip().split("\n\n")]
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


def test_session_scope_is_shared_across_ingress_replicas(client):
    headers = {"X-Session-ID": "session-1"}
    assert client.put("/v1/scope", json={"languages": ["javascript"]}, headers=headers).status_code == 200
    for _ in range(8):  # two ingress replicas: requests land on both
        hits = client.post("/v1/search", json={"query": "renderPage configure_logging", "k": 3, "mode": "bm25"}, headers=headers).json()["hits"]
        assert hits and {h["uri"] for h in hits} == {"web/main.js"}
    assert client.get("/v1/scope", headers=headers).json()["scope"]["languages"] == ["javascript"]
    assert client.delete("/v1/scope", headers=headers).status_code == 204
    time.sleep(1.1)  # replica-local scope cache
    hits = client.post("/v1/search", json={"query": "renderPage configure_logging", "k": 5, "mode": "bm25"}, headers=headers).json()["hits"]
    assert "app/logging_setup.py" in {h["uri"] for h in hits}


@pytest.mark.parametrize(
    "method, path, kwargs, status, needle",
    [
        ("post", "/v1/search", {"json": {"query": "x", "k": 0}}, 422, "k"),
        ("post", "/v1/search", {"json": {"query": "x", "colour": "red"}}, 422, "colour: unknown field"),
        ("post", "/v1/search", {"json": {"query": "x" * 20_001}}, 422, "query"),
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
    client.post("/v1/search", json={"query": "logging", "k": 1})
    metrics = client.get("/metrics").text
    assert "codeintel_stage_seconds_bucket" in metrics and "codeintel_requests_total" in metrics
    assert client.get("/openapi.json").json()["paths"]["/v1/search"]


def test_failing_retriever_degrades_but_answers(client):
    ready = client.get("/faulty/readyz")
    assert ready.status_code == 200 and ready.json()["mode"] == "degraded"
    assert "lexical retriever down" in ready.json()["reasons"]
    r = client.post("/faulty/v1/search", json={"query": "read the json configuration file", "k": 3, "mode": "hybrid"})
    assert r.status_code == 200
    body = r.json()
    assert body["skipped_retrievers"]["bm25"].startswith("error") and body["hits"][0]["uri"] == "app/config.py"


def test_dimension_mismatch_is_down(client):
    ready = client.get("/mismatch/readyz")
    assert ready.status_code == 503 and ready.json()["mode"] == "down"
    assert any("dimension mismatch" in reason for reason in ready.json()["reasons"])
