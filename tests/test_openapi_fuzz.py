"""Fuzz the running Serve app from its own OpenAPI spec (schemathesis): no request may end in a 5xx.

Valid and invalid bodies, headers and parameters are generated for every operation of the main app;
each response must be below 500, and every error must be an RFC 9457 problem (application/problem+json).
Examples are kept small so the module runs in about a minute on two cores.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (a dependency of schemathesis)
from hypothesis.errors import Unsatisfiable  # noqa: E402

pytestmark = pytest.mark.integration

PROBLEM_JSON = "application/problem+json"


# schemathesis' own pytest integration (schemathesis.pytest.from_fixture) needs pytest < 9 (it sets
# Node._nodeid), so its Python API drives Hypothesis here: a positive and a negative strategy per operation.
# CODEINTEL_FUZZ_SCALE=20 fuzzes harder by hand (about 20x longer).
SCALE = int(os.environ.get("CODEINTEL_FUZZ_SCALE", "1"))
MAX_EXAMPLES = {"positive": 15 * SCALE, "negative": 15 * SCALE}
SLOW_OPERATIONS = {"POST /v1/answer": 4 * SCALE}  # a streamed answer per example: a few suffice
# Starts a real reindex job per accepted request (one at a time, 409 while one runs): fuzzing it would
# keep the shared session app busy rebuilding under the other HTTP tests. Its inputs are tested directly.
NOT_FUZZED = {"POST /v1/reindex"}


@pytest.fixture(scope="module")
def api_schema(serve_url):
    return schemathesis.openapi.from_url(f"{serve_url}/openapi.json", timeout=30)


def _assert_clean(case, response) -> None:
    where = f"{case.method} {case.path}: {response.status_code} {response.text[:300]!r}\nreproduce: {case.as_curl_command()}"
    assert response.status_code < 500, where
    assert "Traceback (most recent call last)" not in response.text, where
    if response.status_code >= 400:
        content_type = response.headers.get("content-type") or [""]  # schemathesis: name -> list of values
        assert content_type[0].startswith(PROBLEM_JSON), where
        body = response.json()
        assert body["status"] == response.status_code and body["detail"], where


def test_no_generated_request_is_a_server_error(api_schema):
    from schemathesis import GenerationMode

    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /v1/search", "POST /v1/answer", "PUT /v1/scope", "GET /v1/status", "GET /readyz"} <= labels
    failures: list[str] = []
    calls = 0
    statuses: Counter[str] = Counter()
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        if label in NOT_FUZZED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            examples = SLOW_OPERATIONS.get(label, MAX_EXAMPLES[mode.value])

            @settings(max_examples=examples, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                nonlocal calls
                calls += 1
                # the answer stream is 200 with an `error` event on failure; what must never happen is a 5xx
                response = case.call(timeout=120)
                statuses[f"{label} {response.status_code}"] += 1
                _assert_clean(case, response)

            try:
                run()
            except Unsatisfiable:  # nothing to get wrong: an operation without parameters or body
                assert mode is GenerationMode.NEGATIVE, label
            except AssertionError as exc:  # Hypothesis shrank it: keep going, report every operation at once
                failures.append(f"[{label} {mode.value}] {exc}")
    print(f"{calls} generated requests:", dict(sorted(statuses.items())))
    assert not failures, "\n\n".join(failures)
    assert calls >= len(operations) - len(NOT_FUZZED)


def test_huge_query_and_k_are_problems(serve_url):
    import httpx

    from codeintel.retrieval.plan import MAX_K, MAX_QUERY_CHARS

    with httpx.Client(base_url=serve_url, timeout=60) as client:
        cases = [
            ("/v1/search", {"query": "x" * (MAX_QUERY_CHARS + 1)}, "query"),
            ("/v1/search", {"query": "x" * 5_000_000}, "query"),  # 5 MB body: rejected, not processed
            ("/v1/search", {"query": "x", "k": MAX_K + 1}, "k"),
            ("/v1/search", {"query": "x", "k": 10**30}, "k"),
            ("/v1/search", {"query": "x", "k": -1}, "k"),
            ("/v1/search", {"query": "x", "k": 1.5}, "k"),
            ("/v1/search", {"query": "x", "scope": {"include": ["*.py"] * 65}}, "scope.include"),
            ("/v1/answer", {"query": "x", "k": 10**6}, "k"),
            ("/v1/answer", {"query": "x" * (MAX_QUERY_CHARS + 1)}, "query"),
        ]
        for path, body, field in cases:
            r = client.post(path, json=body)
            assert r.status_code == 422, (path, field, r.status_code, r.text[:200])
            assert r.headers["content-type"] == PROBLEM_JSON and field in r.json()["detail"], r.text[:300]
        # the largest allowed values are served
        r = client.post("/v1/search", json={"query": "configure logging " * (MAX_QUERY_CHARS // 20), "k": MAX_K, "mode": "hybrid"})
        assert r.status_code == 200, r.text[:300]
        assert r.json()["hits"]


@pytest.mark.parametrize(
    "scope",
    [
        {"include": ["../../etc/*"]},
        {"include": ["**/../.."]},
        {"exclude": ["src/../../x"]},
        {"include": ["a\u0000b"]},
        {"include": ["x" * 513]},
    ],
)
def test_traversal_and_malformed_scopes_are_400(serve_url, scope):
    import httpx

    with httpx.Client(base_url=serve_url, timeout=60) as client:
        r = client.post("/v1/search", json={"query": "logging", "k": 3, "scope": scope})
        assert r.status_code == 400, r.text[:300]
        assert r.headers["content-type"] == PROBLEM_JSON
        r = client.put("/v1/scope", json=scope, headers={"X-Session-ID": "fuzz-traversal"})
        assert r.status_code == 400, r.text[:300]
        assert r.headers["content-type"] == PROBLEM_JSON


def test_absolute_glob_is_repo_relative_and_matches_nothing_outside(serve_url):
    import httpx

    with httpx.Client(base_url=serve_url, timeout=60) as client:
        r = client.post("/v1/search", json={"query": "root password", "k": 5, "mode": "bm25", "scope": {"include": ["/etc/passwd"]}})
        assert r.status_code == 200 and r.json()["hits"] == []
        r = client.post("/v1/search", json={"query": "json configuration", "k": 5, "mode": "bm25", "scope": {"include": ["/app/config.py"]}})
        assert [h["uri"] for h in r.json()["hits"]] == ["app/config.py"]
