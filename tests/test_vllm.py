"""vLLM's CPU build in the real Serve graph: ray.serve.llm's LLMServer under the Generator, answers
streamed over HTTP, every sentence cited by construction, and a disconnect that aborts the request
inside vLLM. The app is deployed once for this module next to the session's apps and removed after
it, so its engine does not share the 2 cores with the rest of the suite."""

from __future__ import annotations

import re
import time

import httpx
import msgspec
import pytest

from codeintel.answer.citations import cited_sentences_regex
from conftest import SERVE_STATE as STATE
from helpers_sse import iter_sse_events, sse_events

pytest.importorskip("vllm")
pytestmark = pytest.mark.integration

QUESTION = "How does the http client send a request and retry it?"


@pytest.fixture(scope="module")
def client(serve_url):
    from ray import serve

    from codeintel.config import VLLMSettings
    from deployments.app import build_graph

    # short answers keep the CPU engine's share of the suite small; 2 threads for its OpenMP pool
    vllm = VLLMSettings(max_new_tokens=48, max_model_len=2048, max_num_seqs=4, cpus_per_replica=2)
    args = STATE["args"]
    cfg = msgspec.structs.replace(args, ingress_replicas=1, generator="vllm",
                                  settings=msgspec.structs.replace(args.settings, vllm=vllm))
    serve.run(build_graph(cfg), name="vllm", route_prefix="/vllm")
    try:
        with httpx.Client(base_url=serve_url + "/vllm", timeout=300) as c:
            yield c
    finally:
        serve.delete("vllm")


def _generator(client) -> dict:
    return client.get("/readyz").json()["checks"]["generator"]


def test_the_graph_answers_with_vllm_and_is_ready(client):
    info = _generator(client)
    assert info["ok"] and info["model_id"] == "vllm:codeintel-llm" and info["fallback"] is None, info
    assert client.get("/readyz").json()["mode"] == "ready"


def test_vllm_streams_an_answer_whose_every_sentence_cites_a_given_source(client):
    with client.stream("POST", "/v1/answer", json={"query": QUESTION, "k": 2, "mode": "hybrid", "generation_budget_s": 600}) as r:
        assert r.status_code == 200
        events = sse_events(r)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and "error" not in kinds, events[-3:]
    hits = {d["n"]: d for e, d in events if e == "hit"}
    text = "".join(d["text"] for e, d in events if e == "token")
    done = events[-1][1]
    assert done["mode"] == "vllm:codeintel-llm" and done["usage"]["tokens_in"] > 0
    # the grammar: whole sentences end in [n] of a given source; only the last may be cut by max_tokens
    sentences = re.findall(r".*?(?:\[\d+\])+\.?", text, flags=re.S)
    assert sentences and re.fullmatch(cited_sentences_regex(len(hits)), "".join(sentences)), text
    assert done["unknown_citations"] == 0 and done["cited"], done
    for cited in done["cited"]:  # citations resolve to real lines of the indexed files
        assert not cited["attributed"] and cited["uri"] == hits[cited["n"]]["uri"]
        lines = (STATE["repo"] / cited["uri"]).read_text().split("\n")
        assert 1 <= cited["start_line"] <= cited["end_line"] <= len(lines)
    citations = [d for e, d in events if e == "citation"]
    assert {c["n"] for c in citations} == {c["n"] for c in done["cited"]}


def test_a_client_disconnect_aborts_the_request_inside_vllm(client):
    body = {"query": "explain every function of the repository in detail", "k": 3, "mode": "dense"}
    with client.stream("POST", "/v1/answer", json=body) as r:
        for event, _ in iter_sse_events(r):
            if event == "token":
                running = _generator(client)["engine_requests"]
                break  # leave mid-answer: the connection closes here
    assert running >= 1  # vLLM held the request while tokens streamed
    deadline = time.time() + 30
    while time.time() < deadline and _generator(client)["engine_requests"]:
        time.sleep(0.25)
    info = _generator(client)
    assert info["engine_requests"] == 0 and info["streams"]["active"] == 0, info
