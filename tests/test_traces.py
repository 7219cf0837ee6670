from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from codeintel.answer.traces import AnswerTrace, TraceWriter, read_traces


def trace(n: int) -> AnswerTrace:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=n)
    return AnswerTrace(
        trace_id=f"t{n}", session_id="s" if n % 2 else None, query=f"question {n}", scope={"languages": ["python"]},
        budgets={"retrieval_s": 2.0, "generation_s": 30.0}, stage_ms={"embed": 5.0, "bm25": 7.5},
        retriever_ids={"dense": [1, 2], "bm25": [2, 3]}, rerank_scores=[1.5, -0.5], model_id="extractive",
        model_params={"temperature": 0.0}, tokens_in=100, tokens_out=20 + n, ttft_ms=12.0, tps=None, mode="extractive",
        fallbacks=["bm25"] if n == 3 else [], error=None, started_at=start, ended_at=start + timedelta(seconds=1),
    )


def test_traces_are_batched_to_parquet_and_read_back_newest_first(tmp_path):
    writer = TraceWriter(tmp_path / "traces", flush_rows=4, flush_s=60)
    for n in range(10):
        writer.write(trace(n))
    deadline = time.time() + 10
    while len(list((tmp_path / "traces").glob("part-*.parquet"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(list((tmp_path / "traces").glob("part-*.parquet"))) == 2  # two full batches, the rest still queued
    writer.close()
    rows = read_traces(tmp_path / "traces", last=20)
    assert [r["trace_id"] for r in rows] == [f"t{n}" for n in range(9, -1, -1)]
    row = next(r for r in rows if r["trace_id"] == "t3")
    assert row["fallbacks"] == ["bm25"] and row["scope"] == {"languages": ["python"]}
    assert dict(row["stage_ms"]) == {"embed": 5.0, "bm25": 7.5} and row["tokens_out"] == 23
    assert row["retriever_ids"] == {"dense": [1, 2], "bm25": [2, 3]}
    assert read_traces(tmp_path / "traces", last=3)[0]["trace_id"] == "t9"
    assert not list((tmp_path / "traces").glob(".*.tmp"))


def test_time_based_flush_and_empty_dir(tmp_path):
    assert read_traces(tmp_path) == []
    writer = TraceWriter(tmp_path / "t", flush_rows=1000, flush_s=0.2)
    writer.write(trace(1))
    deadline = time.time() + 5
    while not list((tmp_path / "t").glob("part-*.parquet")) and time.time() < deadline:
        time.sleep(0.05)
    assert [r["trace_id"] for r in read_traces(tmp_path / "t")] == ["t1"]
    writer.close()


def test_cli_lists_traces(tmp_path, capsys):
    from codeintel.cli import main

    writer = TraceWriter(tmp_path / "tr", flush_rows=1)
    writer.write(trace(3))
    writer.close()
    assert main(["traces", "--dir", str(tmp_path / "tr"), "--last", "5"]) == 0
    out = capsys.readouterr().out
    assert "t3" in out and "fallbacks=bm25" in out and "question 3" in out and "2026-01-01T00:00:03" in out
    assert main(["traces", "--dir", str(tmp_path / "none")]) == 0
    assert main(["traces", "--last", "0"]) == 2


def test_a_writer_that_stopped_fails_its_check(tmp_path):
    writer = TraceWriter(tmp_path / "traces")
    writer.check()
    writer.close()
    with pytest.raises(RuntimeError, match="has stopped"):
        writer.check()
