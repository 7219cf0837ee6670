"""Read lines of a live source file of an indexed repository, never anything outside its root.

The HTTP API serves files by their repo-relative ``uri`` only. A uri is checked for shape first
(relative, no ``..``, no NUL or backslash), and the resolved path, symlinks followed, must still lie
inside the repository root: a file swapped for a symlink after indexing cannot leak other files.
Lines split on ``\\n`` only, as the chunker splits them, so line numbers match the index.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import msgspec

from codeintel.errors import InputError, NotIndexedError
from codeintel.text import is_utf8

__all__ = ["MAX_LINES", "MAX_FILE_BYTES", "FileLines", "check_uri", "read_lines"]

MAX_LINES = 2000  # lines one read returns at most
MAX_FILE_BYTES = 16 * 1024 * 1024


class FileLines(msgspec.Struct, frozen=True):
    uri: str
    start_line: int
    end_line: int  # last line returned (start_line - 1 when none)
    total_lines: int
    truncated: bool  # more lines were asked for than MAX_LINES allows
    lines: list[str]


def check_uri(uri: str) -> str:
    """The uri as a normalized repo-relative POSIX path; InputError for anything that could escape."""
    if not isinstance(uri, str) or not uri.strip():
        raise InputError("uri must be a non-empty repository-relative path")
    if not is_utf8(uri):
        raise InputError("uri is not valid UTF-8 text")
    if "\x00" in uri or "\\" in uri:
        raise InputError(f"uri {uri!r} contains NUL or a backslash; use a repository-relative POSIX path")
    if uri.startswith("/") or os.path.isabs(uri) or (len(uri) > 2 and uri[0].isalpha() and uri[1:3] == ":/"):
        raise InputError(f"uri {uri!r} is absolute; use a path relative to the repository root, e.g. as search hits report it")
    parts = uri.split("/")
    if ".." in parts:
        raise InputError(f"uri {uri!r} has a '..' segment; paths outside the repository are not served")
    normalized = posixpath.normpath(uri)
    return normalized.removeprefix("./")


def _split(text: str) -> list[str]:
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


def read_lines(root: str | os.PathLike[str], uri: str, start_line: int = 1, end_line: int | None = None, max_lines: int = MAX_LINES) -> FileLines:
    """Lines ``start_line..end_line`` (1-based, inclusive; None: to the end), at most ``max_lines`` of them."""
    uri = check_uri(uri)
    if start_line < 1 or (end_line is not None and end_line < start_line):
        raise InputError(f"bad line range {start_line}..{end_line}: start_line >= 1 and end_line >= start_line")
    base = Path(root).resolve()
    path = (base / uri).resolve()
    if not path.is_relative_to(base):
        raise InputError(f"{uri!r} resolves outside the repository root (a symlink?); it is not served")
    try:
        is_file = path.is_file()
    except OSError:  # a name the OS refuses (too long, ...)
        is_file = False
    if not is_file:
        raise NotIndexedError(f"{uri!r} is in the index but no longer a file under {base}; re-index the repository")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"{uri!r} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; read it in place")
    lines = _split(path.read_bytes().decode("utf-8", errors="replace"))
    total = len(lines)
    if start_line > total:
        raise InputError(f"start_line {start_line} is past the end of {uri!r} ({total} lines)")
    last = total if end_line is None else min(end_line, total)
    truncated = last - start_line + 1 > max_lines
    if truncated:
        last = start_line + max_lines - 1
    return FileLines(uri, start_line, last, total, truncated, lines[start_line - 1 : last])
