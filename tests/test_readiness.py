"""Which failure is down and which degraded: the readiness policy without Ray."""

from __future__ import annotations

from codeintel.service.readiness import probe_error, readiness, status_headline

OK = {"ok": True}


def checks(**overrides) -> dict:
    base = {"embedder": {**OK, "dim": 384}, "hydrator": {**OK, "parquet_dim": 384}, "lexical": OK, "reranker": OK,
            "scope_store": OK, "generator": {**OK, "fallback": None}, "index_writer": OK,
            "faiss_shard_0": {**OK, "dim": 384, "gpu": False}}
    return base | overrides


def test_all_up_is_ready_with_a_dimension_check():
    report = readiness(checks())
    assert report["mode"] == "ready" and report["reasons"] == []
    assert report["checks"]["dimensions"] == {"ok": True, "embedder": 384, "parquet": 384, "faiss_shard_0": 384}


def test_what_is_down_and_what_is_degraded():
    failed = probe_error(RuntimeError("boom\ntrace"))
    assert failed == {"ok": False, "error": "RuntimeError: boom"}
    assert readiness(checks(hydrator=failed))["reasons"] == ["index unreadable"]
    assert readiness(checks(faiss_shard_0=failed))["mode"] == "down"
    assert readiness(checks(faiss_shard_0={**OK, "dim": 768}))["reasons"][0].startswith("dimension mismatch")
    degraded = readiness(checks(lexical=failed, reranker=failed, scope_store=failed, index_writer=failed,
                                generator={**OK, "fallback": "LLM unavailable"}), ["Hydrator unhealthy: x"])
    assert degraded["mode"] == "degraded" and degraded["reasons"] == [
        "lexical retriever down", "reranker down", "LLM unavailable", "session scopes unavailable", "reindexing unavailable", "Hydrator unhealthy: x"]
    assert readiness(checks(), expect_gpu=True)["reasons"] == ["faiss_shard_0 on CPU instead of GPU"]


def test_a_serve_status_headline_skips_stack_frames():
    message = "Traceback (most recent call last):\n  File \"x.py\", line 1\n\tat org.Foo\nIndexNotFoundException: no segments"
    assert status_headline(message) == "IndexNotFoundException: no segments" and status_headline(None) == "no detail"
