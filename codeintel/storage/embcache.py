"""Embeddings cached by the hash of the text that was embedded.

Identical chunks across commits and repositories are embedded once. The cache is a DuckDB file
keyed by (model id, key); a batch is committed as it is written, so an interrupted run keeps
what it already paid for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from codeintel.config import EmbeddingContract

__all__ = ["EmbeddingCache"]


class EmbeddingCache:
    def __init__(self, path: Path, contract: EmbeddingContract) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.contract = contract
        self._con = duckdb.connect(str(self.path))
        self._con.execute(
            f"CREATE TABLE IF NOT EXISTS embeddings (model_id VARCHAR, key VARCHAR, vec FLOAT[{contract.dim}], "
            "PRIMARY KEY (model_id, key))"
        )

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        if not keys:
            return {}
        wanted = pa.table({"key": pa.array(list(dict.fromkeys(keys)), pa.string())})
        self._con.register("wanted", wanted)
        try:
            table = self._con.sql(
                "SELECT e.key, e.vec FROM embeddings e JOIN wanted w ON e.key = w.key WHERE e.model_id = ?",
                params=[self.contract.model_id],
            ).to_arrow_table()
        finally:
            self._con.unregister("wanted")
        if table.num_rows == 0:
            return {}
        vectors = np.asarray(table.column("vec").combine_chunks().flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        vectors = vectors.reshape(-1, self.contract.dim)
        return dict(zip(table.column("key").to_pylist(), vectors))

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        table = pa.table(
            {
                "model_id": pa.array([self.contract.model_id] * len(keys), pa.string()),
                "key": pa.array(list(keys), pa.string()),
                "vec": pa.FixedSizeListArray.from_arrays(flat, self.contract.dim),
            }
        )
        self._con.register("incoming", table)
        try:
            self._con.execute("INSERT OR IGNORE INTO embeddings SELECT model_id, key, vec FROM incoming")
        finally:
            self._con.unregister("incoming")

    def __len__(self) -> int:
        return self._con.execute("SELECT count(*) FROM embeddings WHERE model_id = ?", [self.contract.model_id]).fetchone()[0]

    def close(self) -> None:
        self._con.close()
