"""Budget and failure behaviour of the answer flow, with controllable stand-ins for search and generation
(unit tests only; the real Serve path is exercised in test_serve.py)."""

from __future__ import annotations

import asyncio

from codeintel.answer.extractive import ExtractiveEngine
from codeintel.answer.orchestrator import AnswerOrchestrator, AnswerRequest
from codeintel.answer.traces import TraceWriter, read_traces
from codeintel.retrieval.plan import Hit, SearchRequest, SearchResult


def result(skipped=None) -> SearchResult:
    hits = [Hit(id=n, uri=f"f{n}.py", start_line=1, end_line=3, lang="python", symbol=f"s{n}", score=1.0 / n, text="a\nb\nc", ranks={}) for n in (1, 2, 3)]
    return SearchResult(query="q", mode="hybrid", hits=hits, files=[], timings_ms={"dense": 1.0}, retrievers={"dense": 3},
                        version="v", skipped_retrievers=skipped or {}, retriever_ids={"dense": [1, 2, 3]})


def collect(orchestrator, request) -> list[tuple[str, dict]]:
    async def run():
        return [e async for e in orchestrator.stream(request)]

    return asyncio.run(run())


async def search_ok(request, budget_s=None):
    return result({"bm25": "timeout: no answer within 5 s"})


async def search_slow(request, budget_s=None):  # ignores its budget
    await asyncio.sleep(5)


def extractive(question, passages):
    async def gen():
        engine, usage = ExtractiveEngine(), {}
        for delta in engine.generate(question, passages, usage):
            yield delta
        yield {**usage, "model_params": engine.params}  # as the Generator deployment reports it

    return gen()


def endless_generator(text: str, stopped: list[bool]):
    """A generate() that never ends by itself; ``stopped`` records that it was closed."""

    def generate(question, passages):
        async def gen():
            try:
                while True:
                    await asyncio.sleep(0.01)
                    yield text
            finally:
                stopped.append(True)

        return gen()

    return generate


def test_stream_order_citations_fallbacks_and_trace(tmp_path):
    traces = TraceWriter(tmp_path / "t", flush_rows=1)
    events = collect(AnswerOrchestrator(search_ok, extractive, "extractive", traces), AnswerRequest(SearchRequest(query="q")))
    kinds = [k for k, _ in events]
    assert kinds[:3] == ["hit"] * 3 and kinds[-1] == "done" and kinds.count("citation") == 3
    done = events[-1][1]
    assert [c["n"] for c in done["cited"]] == [1, 2, 3] and done["fallbacks"] == ["bm25"]
    traces.close()
    [row] = read_traces(tmp_path / "t")
    assert row["trace_id"] == done["trace_id"] and row["fallbacks"] == ["bm25"] and row["error"] is None
    assert row["retriever_ids"] == {"dense": [1, 2, 3]} and row["model_params"] == {"passages": 3, "lines": 12}
    assert row["tokens_in"] == 0 and row["tokens_out"] == done["usage"]["tokens_out"] > 0 and row["ttft_ms"] is not None


def test_client_going_away_stops_generation_and_is_traced(tmp_path):
    traces = TraceWriter(tmp_path / "t", flush_rows=1)
    stopped: list[bool] = []
    endless = endless_generator("text ", stopped)

    async def run():
        stream = AnswerOrchestrator(search_ok, endless, "endless", traces).stream(AnswerRequest(SearchRequest(query="q")))
        async for event, _ in stream:
            if event == "token":
                break
        await stream.aclose()  # what the ingress does when the client disconnects

    asyncio.run(run())
    traces.close()
    assert stopped == [True]
    [row] = read_traces(tmp_path / "t")
    assert row["error"] == "client disconnected" and row["tokens_out"] == 1


def test_retrieval_budget_and_generation_budget(tmp_path):
    events = collect(AnswerOrchestrator(search_slow, extractive, "extractive"), AnswerRequest(SearchRequest(query="q"), retrieval_budget_s=0.05))
    assert [k for k, _ in events] == ["error"] and "budget" in events[0][1]["message"]

    stopped: list[bool] = []
    endless = endless_generator("more text [1] ", stopped)

    events = collect(AnswerOrchestrator(search_ok, endless, "endless"), AnswerRequest(SearchRequest(query="q"), generation_budget_s=0.1))
    kinds = [k for k, _ in events]
    assert "error" in kinds and kinds[-1] == "done" and "generation_budget" in events[-1][1]["fallbacks"]
    assert stopped == [True]  # the generator was closed, not abandoned
    assert [k for k, _ in events].count("citation") == 1


def test_failures_become_error_events():
    async def broken(request, budget_s=None):
        raise RuntimeError("index went away")

    events = collect(AnswerOrchestrator(broken, extractive, "extractive"), AnswerRequest(SearchRequest(query="q")))
    assert events == [("error", {"message": "RuntimeError: index went away", "status": 500})]


def scripted(usage: dict, *deltas: str):
    """A generate() that reports ``usage`` first (as the Generator does), then the given text."""

    def generate(question, passages):
        async def gen():
            yield usage
            for delta in deltas:
                yield delta

        return gen()

    return generate


def test_citations_carry_the_lines_the_prompt_showed_under_the_hits_numbers():
    from codeintel.answer.extractive import Passage

    shown = [Passage(3, "f3.py", 2, 2, "s3", "b"), Passage(1, "f1.py", 1, 2, "s1", "a\nb")]  # cut windows, hit numbers
    generate = scripted({"tokens_in": 9, "passages": shown}, "It reads b [3]", ". Then a [1].")
    events = collect(AnswerOrchestrator(search_ok, generate, "m"), AnswerRequest(SearchRequest(query="q")))
    citations = [d for k, d in events if k == "citation"]
    assert [(c["n"], c["uri"], c["start_line"], c["end_line"]) for c in citations] == [(3, "f3.py", 2, 2), (1, "f1.py", 1, 2)]
    assert [c["n"] for c in events[-1][1]["cited"]] == [3, 1]


def test_a_refusal_is_not_attributed_to_sources():
    from codeintel.answer.citations import REFUSAL

    async def search(request, budget_s=None):
        hit = Hit(id=1, uri="cfg.py", start_line=1, end_line=2, lang="python", symbol="load_config",
                  score=1.0, text="def load_config(path):\n    return json_file(path)", ranks={})
        return SearchResult(query="q", mode="hybrid", hits=[hit], files=[], timings_ms={}, retrievers={}, version="v")

    def ask(text):
        events = collect(AnswerOrchestrator(search, scripted({"tokens_in": 9}, text), "m"), AnswerRequest(SearchRequest(query="q")))
        return [d for k, d in events if k == "citation"]

    # names the hit's symbol, yet used nothing: no citation; an uncited answer naming it still is pointed at it
    assert ask(f"{REFUSAL} how load_config reads YAML.") == []
    assert [(c["uri"], c["attributed"]) for c in ask("It calls load_config, which reads json_file.")] == [("cfg.py", True)]
