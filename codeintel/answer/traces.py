"""AnswerTrace: one row per answer request, appended to a Parquet dataset off the request path.

Rows are queued and written by a background thread in batches (one Parquet part file per flush,
written to a temporary name and renamed, so readers never see half a file). DuckDB reads the
dataset directly: ``codeintel traces --last 20``.
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["AnswerTrace", "TraceWriter", "read_traces"]


class AnswerTrace(msgspec.Struct):
    trace_id: str
    session_id: str | None
    query: str
    scope: dict
    budgets: dict[str, float]
    stage_ms: dict[str, float]
    retriever_ids: dict[str, list[int]]  # top-k chunk ids per retriever
    rerank_scores: list[float]
    model_id: str
    model_params: dict
    tokens_in: int
    tokens_out: int
    ttft_ms: float | None
    tps: float | None
    mode: str  # "llm" | "extractive" | ...
    fallbacks: list[str]
    error: str | None
    started_at: datetime
    ended_at: datetime


_SCHEMA = pa.schema(
    [
        ("trace_id", pa.string()), ("session_id", pa.string()), ("query", pa.string()), ("scope", pa.string()),
        ("budgets", pa.string()), ("stage_ms", pa.map_(pa.string(), pa.float64())), ("retriever_ids", pa.string()),
        ("rerank_scores", pa.list_(pa.float64())), ("model_id", pa.string()), ("model_params", pa.string()),
        ("tokens_in", pa.int64()), ("tokens_out", pa.int64()), ("ttft_ms", pa.float64()), ("tps", pa.float64()),
        ("mode", pa.string()), ("fallbacks", pa.list_(pa.string())), ("error", pa.string()),
        ("started_at", pa.timestamp("ms", tz="UTC")), ("ended_at", pa.timestamp("ms", tz="UTC")),
    ]
)
_JSON_FIELDS = ("scope", "budgets", "retriever_ids", "model_params")


def _row(trace: AnswerTrace) -> dict:
    row = msgspec.structs.asdict(trace)
    for name in _JSON_FIELDS:
        row[name] = msgspec.json.encode(row[name]).decode()
    row["stage_ms"] = list(row["stage_ms"].items())
    return row


class TraceWriter:
    """Queue traces from request handlers; a daemon thread writes them every ``flush_rows`` or ``flush_s``."""

    def __init__(self, directory: str | os.PathLike[str], flush_rows: int = 256, flush_s: float = 5.0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self._queue: queue.Queue[AnswerTrace | None] = queue.Queue(maxsize=100_000)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="trace-writer", daemon=True)
        self._thread.start()

    def write(self, trace: AnswerTrace) -> None:
        """Never blocks the request: a full queue drops the trace and counts it."""
        try:
            self._queue.put_nowait(trace)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        pending: list[AnswerTrace] = []
        deadline = time.monotonic() + self.flush_s
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = ...
            if item is None:
                self._flush(pending)
                return
            if item is not ...:
                pending.append(item)
            if len(pending) >= self.flush_rows or (pending and time.monotonic() >= deadline) or item is ...:
                self._flush(pending)
                pending = []
                deadline = time.monotonic() + self.flush_s

    def _flush(self, traces: list[AnswerTrace]) -> None:
        if not traces:
            return
        table = pa.Table.from_pylist([_row(t) for t in traces], schema=_SCHEMA)
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}.parquet"
        tmp = self.directory / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.directory / name)

    def check(self) -> None:
        """A writer thread that died (a failed write) would drop every later trace unseen."""
        if not self._thread.is_alive():
            raise RuntimeError(f"the answer-trace writer for {self.directory} has stopped")

    def close(self) -> None:
        """Write what is queued and stop."""
        self._queue.put(None)
        self._thread.join(timeout=30)


def read_traces(directory: str | os.PathLike[str], last: int = 20) -> list[dict]:
    """The newest ``last`` traces, newest first (JSON-typed fields decoded)."""
    path = Path(directory)
    if not any(path.glob("part-*.parquet")):
        return []
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        cursor = con.execute(
            # timestamps as ISO text: DuckDB's Python conversion of TIMESTAMPTZ would need pytz
            "SELECT * REPLACE (strftime(started_at, '%Y-%m-%dT%H:%M:%S.%gZ') AS started_at, "
            "strftime(ended_at, '%Y-%m-%dT%H:%M:%S.%gZ') AS ended_at) "
            "FROM read_parquet(?) ORDER BY read_parquet.started_at DESC LIMIT ?",
            [str(path / "part-*.parquet"), int(last)],
        )
        columns = [d[0] for d in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()
    for row in rows:  # JSON-typed columns back to objects, as they were written
        for name in _JSON_FIELDS:
            row[name] = msgspec.json.decode(row[name]) if row[name] is not None else None
    return rows


def now() -> datetime:
    return datetime.now(timezone.utc)
