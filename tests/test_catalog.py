from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from codeintel.config import EmbeddingContract
from codeintel.errors import ScopeError
from codeintel.indexing.chunking import Chunk
from codeintel.storage.catalog import Catalog, build_catalog
from codeintel.storage.chunks import new_chunk_table, read_contract, write_chunks
from codeintel.storage.scope import Scope

CONTRACT = EmbeddingContract(model_id="test/model", weights="test-weights", dim=8)
LANGS = {"py": "python", "ts": "typescript", "md": "markdown"}


def make_chunks(n: int) -> list[Chunk]:
    chunks = []
    for i in range(n):
        ext = ["py", "ts", "md"][i % 3]
        folder = ["src", "tests", "docs"][i % 3]
        chunks.append(
            Chunk(id=1000 + i, repo="r", uri=f"{folder}/f{i % 50}.{ext}", start_line=i + 1, end_line=i + 2,
                  lang=LANGS[ext], hash=f"h{i}", symbol=f"sym{i}", context="", text=f"text {i}")
        )
    return chunks


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    chunks = make_chunks(3000)
    table = new_chunk_table(chunks, np.random.default_rng(0).random((len(chunks), 8), dtype=np.float32), "abc", CONTRACT)
    assert write_chunks(root / "chunks.parquet", [table], CONTRACT) == 3000
    assert read_contract(root / "chunks.parquet") == CONTRACT
    assert build_catalog(root / "chunks.parquet", root / "catalog.duckdb") == 3000
    cat = Catalog(root / "catalog.duckdb")
    yield cat
    cat.close()


def test_query_by_ids_keeps_order_and_drops_unknown(catalog):
    rows = catalog.query_by_ids([1005, 999999, 1001, np.int64(1003), 1001])
    assert [r.id for r in rows] == [1005, 1001, 1003]
    assert rows[0].text == "text 5" and rows[0].commit == "abc" and rows[0].lang == "markdown"


def test_query_by_ids_applies_scope_in_sql(catalog):
    ids = list(range(1000, 1030))
    assert {r.lang for r in catalog.query_by_ids(ids, Scope(languages=("python",)))} == {"python"}
    assert {r.uri.split("/")[0] for r in catalog.query_by_ids(ids, Scope(include=("src/**", "docs/*.md")))} == {"src", "docs"}
    rows = catalog.query_by_ids(ids, Scope(exclude=("*.md", "tests/")))
    assert rows and all(r.uri.startswith("src/") for r in rows)
    assert catalog.query_by_ids(ids, Scope(include=("nowhere/**",))) == []


def test_bad_scope_and_bad_ids_raise(catalog):
    with pytest.raises(ScopeError):
        catalog.query_by_ids([1000], Scope(languages=("cobol-85",)))
    with pytest.raises(ValueError):
        catalog.query_by_ids(["1000; DROP TABLE chunks"])
    with pytest.raises(ValueError):
        catalog.query_by_ids([2**64])
    assert catalog.query_by_ids([]) == []


def test_concurrent_queries_from_8_threads_are_correct(catalog):
    rng = np.random.default_rng(1)
    batches = [sorted(set(rng.integers(1000, 4000, size=100).tolist())) for _ in range(64)]

    def run(ids):
        rows = catalog.query_by_ids(ids, Scope(languages=("python", "typescript")))
        return ids, rows

    with ThreadPoolExecutor(max_workers=8) as pool:
        for ids, rows in pool.map(run, batches):
            expected = [i for i in ids if (i - 1000) % 3 in (0, 1)]
            assert [r.id for r in rows] == expected
            assert all(r.text == f"text {r.id - 1000}" for r in rows)


def test_file_chunks_overlap_a_line_range_in_line_order(catalog):
    # src/f0.py holds chunks i = 0, 150, 300, ... (i % 3 == 0 and i % 50 == 0), lines i+1..i+2
    assert catalog.has_file("src/f0.py") and not catalog.has_file("src/f0") and not catalog.has_file("src/%")
    rows = catalog.file_chunks("src/f0.py")
    assert [r.start_line for r in rows] == sorted(r.start_line for r in rows) and rows[0].start_line == 1
    assert {r.uri for r in rows} == {"src/f0.py"}
    assert [(r.start_line, r.end_line) for r in catalog.file_chunks("src/f0.py", 152, 301)] == [(151, 152), (301, 302)]
    assert [r.start_line for r in catalog.file_chunks("src/f0.py", 2000)][:1] == [2101]
    assert len(catalog.file_chunks("src/f0.py", limit=3)) == 3 and catalog.file_chunks("src/f0.py", 3, 100) == []
