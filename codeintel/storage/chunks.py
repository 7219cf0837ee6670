"""The chunk table on disk: one Parquet file per index version, embeddings included."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from codeintel.config import EmbeddingContract
from codeintel.errors import IndexFormatError
from codeintel.indexing.chunking import Chunk

__all__ = ["chunk_schema", "new_chunk_table", "write_chunks", "read_chunk_table", "read_contract", "embeddings_of", "FILE_SCHEMA"]

_CONTRACT_KEY = b"codeintel.embedding_contract"

FILE_SCHEMA = pa.schema(
    [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("file_hash", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("chunks", pa.int32(), nullable=False),
    ]
)


def chunk_schema(contract: EmbeddingContract) -> pa.Schema:
    fields = [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("repo", pa.string(), nullable=False),
        pa.field("commit", pa.string()),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("start_line", pa.int32(), nullable=False),
        pa.field("end_line", pa.int32(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("hash", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("context", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), contract.dim), nullable=False),
    ]
    return pa.schema(fields, metadata={_CONTRACT_KEY: msgspec.json.encode(contract)})


def _chunk_columns(chunks: Sequence[Chunk], commit: str | None) -> dict[str, list]:
    return {
        "id": [c.id for c in chunks],
        "repo": [c.repo for c in chunks],
        "commit": [commit] * len(chunks),
        "uri": [c.uri for c in chunks],
        "start_line": [c.start_line for c in chunks],
        "end_line": [c.end_line for c in chunks],
        "lang": [c.lang for c in chunks],
        "hash": [c.hash for c in chunks],
        "symbol": [c.symbol for c in chunks],
        "context": [c.context for c in chunks],
        "text": [c.text for c in chunks],
    }


def new_chunk_table(chunks: Sequence[Chunk], embeddings: np.ndarray, commit: str | None, contract: EmbeddingContract) -> pa.Table:
    if embeddings.shape != (len(chunks), contract.dim):
        raise ValueError(f"embeddings shape {embeddings.shape} != ({len(chunks)}, {contract.dim})")
    schema = chunk_schema(contract)
    columns = _chunk_columns(chunks, commit)
    flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1))
    arrays = [pa.array(columns[f.name], type=f.type) for f in schema if f.name != "embedding"]
    arrays.append(pa.FixedSizeListArray.from_arrays(flat, contract.dim))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_chunks(path: Path, tables: Iterable[pa.Table], contract: EmbeddingContract) -> int:
    """Write tables (same schema) into one Parquet file sorted by id; returns the row count."""
    schema = chunk_schema(contract)
    parts = [t.cast(schema) if t.schema != schema else t for t in tables if t.num_rows]
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    table = table.sort_by("id")
    pq.write_table(table, path, compression="zstd", row_group_size=32_768)
    return table.num_rows


def read_contract(path: Path) -> EmbeddingContract:
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(_CONTRACT_KEY)
    if raw is None:
        raise IndexFormatError(f"{path} carries no embedding contract")
    return msgspec.json.decode(raw, type=EmbeddingContract)


def read_chunk_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(path, columns=columns)


def embeddings_of(table: pa.Table, dim: int) -> np.ndarray:
    column = table.column("embedding").combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(values, dtype=np.float32).reshape(-1, dim)
