"""Strings that must be real UTF-8: file names, paths, queries, globs, uris.

Python hands bytes that are not UTF-8 (from the OS or argv) back as lone surrogates, and JSON can
carry one ("\\ud800"); DuckDB, Lucene, the embedder and JSON output all need real UTF-8, so such
strings are rejected or reported where they enter.
"""

from __future__ import annotations

import os

__all__ = ["is_utf8", "printable"]


def is_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(path: str) -> str:
    """A path from the OS with its undecodable bytes shown as \\xNN (for messages and reports only)."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")
