"""Split a file into retrieval units.

Code is cut along its syntax tree (tree-sitter): definitions are units, a definition too large for
one chunk is split along its children (a class into its header and methods, a long function into
runs of statements) and small neighbours under the same parent are merged. Chunks tile the file:
comments and decorators belong to the unit that follows them. Other text files are cut into
overlapping line windows. Every chunk's text is exactly lines start_line..end_line of the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from itertools import accumulate

import msgspec

from codeintel.config import ChunkSettings
from codeintel.indexing.languages import AST_LANGUAGES
from codeintel.indexing.syntax import body_of, definition_name, parser_for

__all__ = ["Chunk", "chunk_file", "chunk_id", "content_hash"]


class Chunk(msgspec.Struct, frozen=True):
    id: int
    repo: str
    uri: str
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    lang: str
    hash: str
    symbol: str  # names the chunk defines, "" when none
    context: str  # enclosing definitions' first lines (class header for a method), not part of text
    text: str


def content_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def chunk_id(repo: str, uri: str, start_line: int, end_line: int, hash_: str) -> int:
    """Stable positive int64 (FAISS reserves -1) from where the chunk is and what it holds."""
    key = f"{repo}\x00{uri}\x00{start_line}\x00{end_line}\x00{hash_}".encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class _Unit:
    start: int  # 0-based row, inclusive
    end: int  # 0-based row, inclusive
    symbols: list[str] = field(default_factory=list)
    context: str = ""
    parent: int = 0  # id of the node whose children produced this unit: merge only siblings


class _Splitter:
    def __init__(self, lines: list[str], settings: ChunkSettings) -> None:
        self.lines = lines
        self.settings = settings
        self.prefix = [0, *accumulate(len(line) + 1 for line in lines)]

    def size(self, start: int, end: int) -> int:
        return self.prefix[end + 1] - self.prefix[start]

    def windows(self, start: int, end: int, overlap: int, symbols: list[str], context: str, parent: int) -> list[_Unit]:
        """Line windows over rows start..end, bounded by lines and chars."""
        s = self.settings
        units: list[_Unit] = []
        row = start
        while row <= end:
            stop = row
            while stop < end and stop - row + 1 < s.window_lines and self.size(row, stop + 1) <= s.max_chars:
                stop += 1
            units.append(_Unit(row, stop, list(symbols), context, parent))
            if stop >= end:
                break
            row = max(row + 1, stop + 1 - overlap)
        return units

    def split(self, nodes, context: str, qualifier: str, parent: int) -> list[_Unit]:
        units: list[_Unit] = []
        for node in nodes:
            start, end = node.start_point[0], node.end_point[0]
            if node.end_point[1] == 0 and end > start:
                end -= 1  # a node ending at column 0 ends on the previous line
            name = definition_name(node)
            qualified = f"{qualifier}.{name}" if qualifier and name else (name or qualifier)
            symbols = [qualified] if qualified else []
            if self.size(start, end) <= self.settings.max_chars:
                units.append(_Unit(start, end, symbols, context, parent))
                continue
            body = body_of(node)
            children = body.named_children if body is not None else []
            if children and children[0].start_point[0] > start or (children and len(children) > 1):
                header_end = max(start, children[0].start_point[0] - 1)
                header_end = min(header_end, end)
                # the header joins its own children's group, so a short class line merges with its first methods
                units.append(_Unit(start, header_end, symbols, context, node.id))
                signature = self.lines[start].strip() if name else ""
                inner_context = f"{context}\n{signature}".strip() if signature else context
                inner = self.split(children, inner_context, qualified, node.id)
                units.extend(u for u in inner if u.end > header_end or u.start > header_end)
            else:
                units.extend(self.windows(start, end, 0, symbols, context, parent))
        return units


def _tile(units: list[_Unit], n_lines: int) -> list[_Unit]:
    """Order units, fold units sharing a row into one, and give gap lines to the next unit."""
    units.sort(key=lambda u: (u.start, u.end))
    tiled: list[_Unit] = []
    for unit in units:
        if tiled and unit.start <= tiled[-1].end:
            prev = tiled[-1]
            if unit.end > prev.end:
                prev.end = unit.end
                prev.symbols.extend(s for s in unit.symbols if s not in prev.symbols)
            continue
        if tiled:
            unit.start = tiled[-1].end + 1
        else:
            unit.start = 0
        tiled.append(unit)
    if tiled:
        tiled[-1].end = n_lines - 1
    return tiled


def _merge(units: list[_Unit], splitter: _Splitter) -> list[_Unit]:
    """Join siblings while the result stays small; a tiny leftover joins its neighbour up to max_chars."""
    limit, hard_limit, tiny = splitter.settings.merge_under_chars, splitter.settings.max_chars, 200
    merged: list[_Unit] = []
    for unit in units:
        if merged:
            prev = merged[-1]
            size = splitter.size(prev.start, unit.end)
            small_enough = size <= limit or (splitter.size(unit.start, unit.end) < tiny and size <= hard_limit)
            if prev.parent == unit.parent and small_enough:
                prev.end = unit.end
                prev.symbols.extend(s for s in unit.symbols if s not in prev.symbols)
                continue
        merged.append(unit)
    return merged


def _ast_units(text: str, lang: str, splitter: _Splitter) -> list[_Unit] | None:
    try:
        tree = parser_for(lang).parse(text.encode("utf-8"))
    except Exception:  # a grammar that fails to load or parse falls back to windows
        return None
    root = tree.root_node
    if not root.named_children:
        return None
    units = splitter.split(root.named_children, "", "", root.id)
    return _merge(_tile(units, len(splitter.lines)), splitter)


def _split_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # the newline ending the last line opens no new line
    return lines


def chunk_file(repo: str, uri: str, text: str, lang: str, settings: ChunkSettings) -> list[Chunk]:
    lines = _split_lines(text)
    splitter = _Splitter(lines, settings)
    units = _ast_units(text, lang, splitter) if lang in AST_LANGUAGES else None
    if not units:
        units = splitter.windows(0, len(lines) - 1, settings.window_overlap, [], "", 0)
    chunks: list[Chunk] = []
    for unit in units:
        body = "\n".join(lines[unit.start : unit.end + 1])
        if not body.strip():
            continue
        start_line, end_line = unit.start + 1, unit.end + 1
        digest = content_hash(body)
        symbols = unit.symbols[:4]
        chunks.append(
            Chunk(
                id=chunk_id(repo, uri, start_line, end_line, digest),
                repo=repo,
                uri=uri,
                start_line=start_line,
                end_line=end_line,
                lang=lang,
                hash=digest,
                symbol=", ".join(symbols),
                context=unit.context,
                text=body,
            )
        )
    return chunks
