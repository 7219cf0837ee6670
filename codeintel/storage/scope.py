"""Scope filters (include/exclude globs, languages) compiled to parameterized SQL.

Glob semantics, fixed here once: patterns match the repo-relative path; ``**`` crosses ``/``,
``*`` and ``?`` do not; ``[...]`` is a character class; a pattern without ``/`` matches the file
name at any depth (``*.py``); a pattern ending in ``/`` matches everything under that directory; a
leading ``/`` anchors at the repository root (``/setup.py``). ``..`` segments, backslashes and NUL are
errors, so no pattern can name anything outside the repository (and patterns only ever filter the
indexed, repository-relative paths).
Patterns that LIKE expresses exactly become LIKE; all others become an RE2 ``regexp_full_match``,
so every pattern is still evaluated inside DuckDB and no row is filtered in Python.
"""

from __future__ import annotations

import re
from typing import Sequence

import msgspec

from codeintel.errors import ScopeError
from codeintel.indexing.languages import KNOWN_LANGUAGES
from codeintel.text import is_utf8

__all__ = ["Scope", "glob_to_regex", "glob_to_like", "scope_sql", "validate_scope"]

_MAX_PATTERNS = 64
_MAX_PATTERN_CHARS = 512


class Scope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.include or self.exclude or self.languages)


def _normalize(pattern: str) -> str:
    if not isinstance(pattern, str) or not pattern.strip():
        raise ScopeError("empty glob pattern")
    if len(pattern) > _MAX_PATTERN_CHARS:
        raise ScopeError(f"glob pattern longer than {_MAX_PATTERN_CHARS} characters")
    if "\x00" in pattern or "\\" in pattern:
        raise ScopeError(f"malformed glob {pattern!r}: backslashes and NUL are not allowed")
    if not is_utf8(pattern):
        raise ScopeError(f"malformed glob {pattern!r}: not valid UTF-8 text")
    p = pattern.strip().removeprefix("./")
    anchored = p.startswith("/")  # '/x' is x at the repository root (as in .gitignore), never a host path
    p = p.lstrip("/")
    if ".." in p.split("/"):
        raise ScopeError(f"malformed glob {pattern!r}: '..' segments are not allowed")
    if p.endswith("/"):
        p += "**"
    if "/" not in p and not anchored:
        p = "**/" + p
    return p


def glob_to_regex(pattern: str) -> str:
    """RE2/Python-compatible regex matching the whole path."""
    p = _normalize(pattern)
    out: list[str] = []
    i = 0
    while i < len(p):
        c = p[i]
        if p.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif p.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = p.find("]", i + 2 if p[i + 1 : i + 2] in ("!", "^", "]") else i + 1)
            if end == -1:
                raise ScopeError(f"malformed glob {pattern!r}: unclosed '['")
            body = p[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            if not body:
                raise ScopeError(f"malformed glob {pattern!r}: empty character class")
            escaped = "".join("\\" + ch if ch in "\\^[]" else ch for ch in body)
            out.append(f"[{'^' if negate else ''}{escaped}]")
            i = end + 1
        elif c == "]":
            raise ScopeError(f"malformed glob {pattern!r}: unmatched ']'")
        else:
            out.append(re.escape(c))
            i += 1
    regex = "".join(out)
    try:
        re.compile(regex)
    except re.error as exc:
        raise ScopeError(f"malformed glob {pattern!r}: {exc}") from None
    return regex


def _like_escape(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def glob_to_like(pattern: str) -> str | None:
    """A LIKE pattern (escape '!') equivalent to the glob, or None when LIKE cannot say it exactly."""
    p = _normalize(pattern)
    if any(ch in p for ch in "?[]"):
        return None
    # "<prefix>/**" -> everything under prefix
    if p.endswith("/**") and "*" not in p[:-3]:
        return _like_escape(p[:-2]) + "%"
    # "**/*<suffix>" and "<prefix>/**/*<suffix>": suffix has no '/' and no '*'
    head, sep, tail = p.rpartition("**/*")
    if sep and "/" not in tail and "*" not in tail and "*" not in head and (not head or head.endswith("/")):
        return _like_escape(head) + "%" + _like_escape(tail)
    # a literal path: "**/name" is a file name at any depth, which LIKE cannot anchor to '/' boundaries
    if "*" not in p:
        return _like_escape(p)
    return None


def validate_scope(scope: Scope) -> None:
    for name, patterns in (("include", scope.include), ("exclude", scope.exclude)):
        if len(patterns) > _MAX_PATTERNS:
            raise ScopeError(f"at most {_MAX_PATTERNS} {name} patterns")
        for pattern in patterns:
            glob_to_regex(pattern)
    if len(scope.languages) > _MAX_PATTERNS:
        raise ScopeError(f"at most {_MAX_PATTERNS} languages")
    unknown = sorted(set(scope.languages) - KNOWN_LANGUAGES)
    if unknown:
        raise ScopeError(f"unknown language(s): {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_LANGUAGES))}")


def _glob_condition(patterns: Sequence[str], params: list) -> str:
    parts = []
    for pattern in patterns:
        like = glob_to_like(pattern)
        if like is not None:
            parts.append("uri LIKE ? ESCAPE '!'")
            params.append(like)
        else:
            parts.append("regexp_full_match(uri, ?)")
            params.append(glob_to_regex(pattern))
    return "(" + " OR ".join(parts) + ")"


def scope_sql(scope: Scope) -> tuple[str, list]:
    """A WHERE fragment (possibly 'TRUE') and its parameters."""
    validate_scope(scope)
    params: list = []
    clauses: list[str] = []
    if scope.languages:
        clauses.append("lang IN (" + ", ".join("?" for _ in scope.languages) + ")")
        params.extend(scope.languages)
    if scope.include:
        clauses.append(_glob_condition(scope.include, params))
    if scope.exclude:
        clauses.append("NOT " + _glob_condition(scope.exclude, params))
    return (" AND ".join(clauses) or "TRUE"), params
