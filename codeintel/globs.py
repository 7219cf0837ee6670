"""One glob engine for index excludes, .gitignore files and search scopes: gitignore rules, via pathspec.

pathspec turns a pattern into a Python regex; this module re-emits that regex piece by piece so the
same pattern runs identically in Python's ``re`` (the walk, pathspec's matcher) and in RE2 (DuckDB,
for scopes). The meaning stays pathspec's except where RE2 or git need otherwise:

* ``$`` (Python: the end, or before a final newline) is ``\\Z`` for Python, ``$`` (the end) for RE2;
* ``(?s)``: ``.`` also matches a newline, so a name with a newline is still one path segment;
* a ``[...]`` class never matches ``/`` (git's rule; pathspec's ``[!x]`` would), and its members are
  written as ``\\xNN`` escapes, so RE2's ``[[:alpha:]]`` and Python's ``[a&&b]`` read alike;
* a leading ``(?:.+/)?`` is ``(?:.*/)?``: different only for a path starting with ``/`` (never an
  indexed path; pathspec strips it before matching), it makes the LIKE forms exact on any string.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from typing import Iterable, Literal

import pathspec
from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

__all__ = ["Glob", "GlobError", "LiteralForm", "compile_glob", "glob_spec"]

DirMatch = Literal["never", "maybe", "always"]
# What a pattern means when it is only literal text (LIKE can then say it exactly):
#   under: the path starts with text        path: the path is text or starts with text + "/"
#   suffix: text ends a segment             name: text is whole segments   dir: text is whole non-final segments
LiteralForm = tuple[Literal["under", "path", "suffix", "name", "dir"], str]


class GlobError(ValueError):
    """A pattern git would drop; scopes and --exclude report it, a .gitignore line is skipped."""

    def __init__(self, pattern: str, reason: str) -> None:
        self.pattern = pattern
        self.reason = reason
        super().__init__(f"malformed glob {pattern!r}: {reason}")


@dataclass(frozen=True)
class Glob:
    """One pattern as the regexes both engines run, and the facts SQL needs to rank and shortcut it."""

    pattern: str
    include: bool  # False for a '!' pattern: it takes back what an earlier pattern matched
    regex: str  # Python re, for re.search
    re2: str  # the same regex in RE2 syntax, for DuckDB's regexp_matches
    dir_match: DirMatch  # whether a match can come from a directory on the path (git ranks those lower)
    literal: LiteralForm | None


# The pieces of pathspec's regexes (pathspec/patterns/gitignore/spec.py), in the order they are tried.
_ANY_DIRS, _START, _INNER, _END_OR_DIR, _DIR = "^(?:.+/)?", "^", "(?:/.+)?", "(?:(?P<ps_d>/)|$)", "(?P<ps_d>/)"
_STAR, _PLUS, _ONE, _ANY = "[^/]*", "[^/]+", "[^/]", "."
_PIECES = (_ANY_DIRS, _END_OR_DIR, _INNER, _DIR, _STAR, _PLUS, _ONE, _START, _ANY)
_RENDER = {  # piece -> (Python, RE2)
    _ANY_DIRS: ("^(?:.*/)?",) * 2,  # '.*': also at a leading '/', which makes the LIKE forms exact on any string
    _END_OR_DIR: ("(?:(?P<ps_d>/)|\\Z)", _END_OR_DIR),
}
_SLASH = 0x2F


def _char(code: int) -> str:
    """The character as both engines read it literally, in a class or out of one."""
    ch = chr(code)
    return ch if code > 0x7F or ch.isalnum() or ch in "_/" else f"\\x{code:02x}"


def _class(raw: str, i: int, pattern: str) -> tuple[str, int]:
    """Python's reading of the class at raw[i] (sre_parse), re-emitted without '/'; returns it and the end."""
    i += 1
    negate = raw.startswith("^", i)
    i += negate
    ranges: list[tuple[int, int]] = []

    def member() -> int:
        nonlocal i
        if raw[i] == "\\":  # pathspec escapes only a backslash inside a class
            i += 2
            return ord(raw[i - 1])
        i += 1
        return ord(raw[i - 1])

    while True:
        if raw[i] == "]" and ranges:
            i += 1
            break
        lo = member()
        if raw.startswith("-", i) and not raw.startswith("-]", i):
            i += 1
            hi = member()
            if hi < lo:
                raise GlobError(pattern, f"bad character range {chr(lo)}-{chr(hi)}")
        else:
            hi = lo
        ranges.append((lo, hi))
    if negate:
        ranges.append((_SLASH, _SLASH))
    else:  # git: a class never matches '/'
        ranges = [part for lo, hi in ranges for part in ((lo, min(hi, _SLASH - 1)), (max(lo, _SLASH + 1), hi)) if part[0] <= part[1]]
        if not ranges:
            raise GlobError(pattern, "a character class cannot match only '/'")
    body = "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in ranges)
    return f"[{'^' if negate else ''}{body}]", i


def _rewrite(raw: str, pattern: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(Python regex, RE2 regex, tokens): a token is ("piece", one of _PIECES), ("lit", a char) or ("class", it)."""
    py, re2, tokens = ["(?s)"], ["(?s)"], []
    i = 0
    while i < len(raw):
        piece = next((p for p in _PIECES if raw.startswith(p, i) and (p != _ANY_DIRS or i == 0)), None)
        if piece is not None:
            token, rendered = ("piece", piece), _RENDER.get(piece, (piece, piece))
            i += len(piece)
        elif raw[i] == "[":
            cls, i = _class(raw, i, pattern)
            token, rendered = ("class", cls), (cls, cls)
        elif raw[i] == "\\" or raw[i] not in "()[]{}?*+|^$.":
            ch = raw[i + 1] if raw[i] == "\\" else raw[i]
            i += 2 if raw[i] == "\\" else 1
            token, rendered = ("lit", ch), (_char(ord(ch)),) * 2
        else:  # pathspec changed what it emits: fail loudly rather than match differently in SQL
            raise GlobError(pattern, f"unexpected regex {raw!r} from pathspec")
        py.append(rendered[0])
        re2.append(rendered[1])
        tokens.append(token)
    return "".join(py), "".join(re2), tokens


_FORMS: dict[tuple[str, str], str] = {
    (_START, _END_OR_DIR): "path", (_STAR, _END_OR_DIR): "suffix", (_ANY_DIRS, _END_OR_DIR): "name", (_ANY_DIRS, _DIR): "dir",
}


def _literal_form(tokens: list[tuple[str, str]]) -> LiteralForm | None:
    """The pattern as (form, literal text) when its only wildcards are the ones the form implies."""
    head, rest = (tokens[0][1], tokens[1:]) if tokens[0][0] == "piece" else (None, tokens)
    if head == _ANY_DIRS and rest[:1] == [("piece", _STAR)]:
        head, rest = _STAR, rest[1:]  # '(?:.*/)?[^/]*' is any prefix at all
    tail, lits = (rest[-1][1], rest[:-1]) if rest and rest[-1][0] == "piece" else (None, rest)
    if head is None or any(kind != "lit" for kind, _ in lits):
        return None
    text = "".join(ch for _, ch in lits)
    if head == _START and (tail == _DIR or (tail is None and text.endswith("/"))):
        return ("under", text if tail is None else text + "/")  # '^src(?P<ps_d>/)' or '^src/' (from 'src/**')
    form = _FORMS.get((head, tail or ""))
    return (form, text) if form else None  # type: ignore[return-value]


@functools.lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> Glob | None:
    """The pattern under gitignore rules; None for a blank line, a comment or '/', which match nothing.

    Raises GlobError where git would drop the line (an unclosed '[', a bad range, a lone '!').
    """
    try:
        raw, include = GitIgnoreSpecPattern.pattern_to_regex(pattern)
    except ValueError as exc:
        raise GlobError(pattern, str(exc)) from None
    if raw is None:
        text = pattern if pattern.endswith("\\ ") else pattern.rstrip()
        if text and not text.startswith("#") and text != "/":
            raise GlobError(pattern, "unclosed '['")  # pathspec (like git) silently drops these
        return None
    try:
        py, re2, tokens = _rewrite(raw, pattern)
    except IndexError:
        raise GlobError(pattern, f"unexpected regex {raw!r} from pathspec") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            re.compile(py)
    except (re.error, FutureWarning) as exc:
        raise GlobError(pattern, str(exc)) from None
    dir_match: DirMatch = "always" if tokens[-1] == ("piece", _DIR) else "maybe" if ("piece", _END_OR_DIR) in tokens else "never"
    return Glob(pattern, bool(include), py, re2, dir_match, _literal_form(tokens))


class _GlobPattern(GitIgnoreSpecPattern):
    """pathspec's gitignore pattern, matching with compile_glob's regex."""

    __slots__ = ()

    @classmethod
    def pattern_to_regex(cls, pattern: str) -> tuple[str | None, bool | None]:  # type: ignore[override]
        glob = compile_glob(pattern)
        return (None, None) if glob is None else (glob.regex, glob.include)


def glob_spec(patterns: Iterable[str], *, drop_malformed: bool = False) -> pathspec.GitIgnoreSpec:
    """The patterns as one gitignore spec (later patterns win, '!' takes back); GlobError on a bad one.

    ``drop_malformed`` skips bad patterns instead, as git does with a .gitignore line.
    """
    kept = []
    for pattern in patterns:
        try:
            compile_glob(pattern)
        except GlobError:
            if not drop_malformed:
                raise
            continue
        kept.append(pattern)
    # the simple backend runs the Python regexes as they are (an installed re2 backend would reject '\Z')
    return pathspec.GitIgnoreSpec.from_lines(kept, _GlobPattern, backend="simple")
