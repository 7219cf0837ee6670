"""The code graph of an index version: Parquet files beside the chunks, tables in its DuckDB catalog.

``graph_defs.parquet`` holds definitions and ``graph_refs.parquet`` references (calls, imports,
base classes), one row per occurrence, both keyed by ``uri`` so a re-index carries the rows of
unchanged files and re-extracts only the changed ones, as it does for chunks. :class:`CodeGraph`
answers the questions agents ask (where is X defined, who uses X, what is in this file) and the
symbol retriever's lookups, all scoped like search.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codeintel.indexing.graph import Definition, Reference
from codeintel.storage.scope import Scope, scope_sql

__all__ = ["DEF_SCHEMA", "REF_SCHEMA", "CodeGraph", "Symbol", "Use", "definitions_table", "references_table", "carry_graph",
           "load_graph_tables"]

DEF_SCHEMA = pa.schema([("uri", pa.string()), ("name", pa.string()), ("qualname", pa.string()), ("kind", pa.string()),
                        ("start_line", pa.int32()), ("end_line", pa.int32()), ("parent", pa.string())])
REF_SCHEMA = pa.schema([("uri", pa.string()), ("name", pa.string()), ("kind", pa.string()), ("line", pa.int32()),
                        ("scope", pa.string()), ("module", pa.string()), ("target_uri", pa.string())])


def _table(rows: Sequence[msgspec.Struct], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([msgspec.structs.asdict(r) for r in rows], schema=schema)


def definitions_table(defs: Sequence[Definition]) -> pa.Table:
    return _table(defs, DEF_SCHEMA)


def references_table(refs: Sequence[Reference]) -> pa.Table:
    return _table(refs, REF_SCHEMA)


def carry_graph(path: Path, touched: Iterable[str], schema: pa.Schema) -> pa.Table | None:
    """The previous version's rows for files not touched by this re-index (None: no previous graph)."""
    if not path.exists():
        return None
    table = pq.read_table(path, schema=schema)
    is_touched = pc.is_in(table.column("uri"), value_set=pa.array(sorted(set(touched)), pa.string()))
    return table.filter(pc.invert(is_touched))


def load_graph_tables(db_path: Path, defs_path: Path, refs_path: Path, files_path: Path) -> None:
    """Copy the graph into the version's catalog with each file's language (scopes filter on it),
    sorted for the lookups :class:`CodeGraph` makes."""
    con = duckdb.connect(str(db_path))
    try:
        for table, path, order in (("defs", defs_path, "name, uri, start_line"), ("refs", refs_path, "name, uri, line")):
            con.execute(f"CREATE TABLE {table} AS SELECT g.*, f.lang FROM read_parquet(?) g JOIN read_parquet(?) f USING (uri) "
                        f"ORDER BY {order}", [str(path), str(files_path)])
        con.execute("CREATE INDEX defs_name ON defs (name)")
        con.execute("CREATE INDEX defs_uri ON defs (uri)")
        con.execute("CREATE INDEX refs_name ON refs (name)")
        con.execute("CHECKPOINT")
    finally:
        con.close()


class Symbol(msgspec.Struct, frozen=True):
    uri: str
    name: str
    qualname: str
    kind: str
    start_line: int
    end_line: int


class Use(msgspec.Struct, frozen=True):
    uri: str
    line: int
    kind: str  # call | import | inherit
    scope: str  # the enclosing definition ("" at module level)
    text: str  # the source line, as indexed


def _split(symbol: str) -> tuple[str, str]:
    """(last name, qualified form or "") of ``pkg.mod.Class.method``, ``Class.method`` or ``method``."""
    symbol = symbol.strip().replace("::", ".").rstrip("()")
    name = symbol.rsplit(".", 1)[-1]
    return name, symbol if "." in symbol else ""


class CodeGraph:
    """Lookups over one version's graph tables, through its read-only catalog cursor."""

    def __init__(self, query) -> None:
        self._query = query  # (sql, params) -> rows: Catalog.query

    def definitions(self, symbol: str, scope: Scope | None = None, limit: int = 20) -> list[Symbol]:
        """Where ``symbol`` is defined. A qualified symbol matches a qualname ending in it; classes
        and functions come before methods and other names, then shorter paths (non-test code first)."""
        name, qualified = _split(symbol)
        where, params = scope_sql(scope or Scope())
        sql = ("SELECT uri, name, qualname, kind, start_line, end_line FROM defs WHERE name = ? AND " + where
               + (" AND (qualname = ? OR qualname LIKE ? ESCAPE '!' OR qualname LIKE ? ESCAPE '!')" if qualified else "")
               + " ORDER BY (kind = 'class' OR kind = 'function') DESC, (uri LIKE '%test%') ASC, length(uri), uri, start_line LIMIT ?")
        # "pkg.mod.Class.method" (Python) or "path/file.js:Class.method": the symbol ends the qualname
        args = [name, *params] + ([qualified, "%." + _escape(qualified), "%:" + _escape(qualified)] if qualified else []) + [int(limit)]
        return [Symbol(*row) for row in self._query(sql, args)]

    def references(self, symbol: str, scope: Scope | None = None, limit: int = 50) -> list[Use]:
        """Where ``symbol`` (its last name) is called, imported or subclassed, in file and line order."""
        name, _ = _split(symbol)
        where, params = scope_sql(scope or Scope())
        sql = (f"SELECT DISTINCT ON (r.uri, r.line, r.kind) r.uri, r.line, r.kind, r.scope, c.text, c.start_line "
               f"FROM (SELECT * FROM refs WHERE name = ? AND {where}) r "
               "LEFT JOIN chunks c ON c.uri = r.uri AND r.line BETWEEN c.start_line AND c.end_line "
               "ORDER BY r.uri, r.line, r.kind LIMIT ?")
        uses = []
        for uri, line, kind, scope_, text, start in self._query(sql, [name, *params, int(limit)]):
            lines = (text or "").split("\n")
            uses.append(Use(uri, line, kind, scope_, lines[line - start].strip() if text and 0 <= line - start < len(lines) else ""))
        return uses

    def outline(self, uri: str) -> list[Symbol]:
        """The definitions of one file in line order."""
        sql = "SELECT uri, name, qualname, kind, start_line, end_line FROM defs WHERE uri = ? ORDER BY start_line, end_line DESC"
        return [Symbol(*row) for row in self._query(sql, [uri])]

    def definition_chunks(self, names: Sequence[str], per_name: int = 3) -> list[int]:
        """The chunk holding the start of each definition of ``names`` (exact), in the order of the
        names, per name at most ``per_name``: classes and functions first, non-test code first.
        One query for all names: a query per name cost a scan of the definitions each."""
        if not names:
            return []
        rank = "(d.kind = 'class' OR d.kind = 'function') DESC, (d.uri LIKE '%test%') ASC, length(d.uri), d.uri, d.start_line"
        rows = self._query(
            "WITH q AS (SELECT unnest(?::VARCHAR[]) AS name, generate_subscripts(?::VARCHAR[], 1) AS ord), "
            f"d AS (SELECT q.ord, d.*, row_number() OVER (PARTITION BY q.ord ORDER BY {rank}) AS n FROM q JOIN defs d USING (name)) "
            "SELECT c.id FROM d JOIN chunks c ON c.uri = d.uri AND d.start_line BETWEEN c.start_line AND c.end_line "
            f"WHERE d.n <= ? ORDER BY d.ord, {rank}, c.id",
            [list(names), list(names), int(per_name)])
        return list(dict.fromkeys(r[0] for r in rows))

    def centrality(self) -> dict[str, float]:
        """Per imported file, log(1 + files importing it) / log(1 + files importing the most imported one)."""
        rows = self._query("SELECT target_uri, count(DISTINCT uri) FROM refs WHERE kind = 'import' AND target_uri <> '' "
                           "GROUP BY target_uri", [])
        top = math.log1p(max((n for _, n in rows), default=0)) or 1.0
        return {uri: math.log1p(n) / top for uri, n in rows}

    def callee_chunks(self, ids: Sequence[int], limit: int) -> list[int]:
        """The chunks defining what the chunks ``ids`` call, nearest first (the callees of the first
        id before those of the second). A name is matched, not type-resolved, so one defined in
        several places counts only where the calling file imports it or defines it itself; calls
        within one chunk, and test code, are left out."""
        if not ids or limit <= 0:
            return []
        sql = """
        WITH src AS (SELECT c.id, c.uri, c.start_line, c.end_line, o.ord
                     FROM (SELECT unnest(?::BIGINT[]) AS id, generate_subscripts(?::BIGINT[], 1) AS ord) o JOIN chunks c USING (id)),
             called AS (SELECT r.name, s.uri, min(s.ord) AS ord FROM refs r
                        JOIN src s ON r.uri = s.uri AND r.line BETWEEN s.start_line AND s.end_line
                        WHERE r.kind = 'call' GROUP BY r.name, s.uri),
             imports AS (SELECT DISTINCT uri, target_uri FROM refs WHERE kind = 'import' AND target_uri <> ''
                         AND uri IN (SELECT uri FROM src)),
             targets AS (SELECT k.ord, d.uri, d.start_line, d.kind,
                                count(*) OVER (PARTITION BY k.name, k.uri) AS defined,
                                (d.uri = k.uri OR EXISTS (SELECT 1 FROM imports i WHERE i.uri = k.uri AND i.target_uri = d.uri)) AS near
                         FROM called k JOIN defs d ON d.name = k.name
                         WHERE d.kind <> 'other' AND d.uri NOT LIKE '%test%')
        SELECT c.id, min(t.ord) AS ord FROM targets t
        JOIN chunks c ON c.uri = t.uri AND t.start_line BETWEEN c.start_line AND c.end_line
        WHERE (t.defined = 1 OR t.near) AND c.id NOT IN (SELECT id FROM src)
        GROUP BY c.id ORDER BY ord, c.id LIMIT ?"""
        ids = [int(i) for i in ids]
        return [row[0] for row in self._query(sql, [ids, ids, int(limit)])]


def _escape(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
