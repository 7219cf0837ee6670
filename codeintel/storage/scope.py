"""Scope filters (include/exclude globs, languages) compiled to parameterized SQL.

Globs follow gitignore rules, from the same engine as the index's excludes (codeintel/globs.py), and
match the repo-relative path: ``*``, ``?`` and ``[...]`` never cross ``/``; ``**`` as a whole segment
spans directories (``src/**``, ``**/test_*.py``, ``a/**/b``); a pattern without a ``/`` before its
end matches at any depth (``*.py``, ``build/``), one with a ``/`` at the start or in the middle is
anchored at the repository root (``/setup.py``, ``docs/*.md``); a pattern also matches everything
under a directory it matches (``vendor`` and ``vendor/`` both cover ``vendor/x.py``); ``!`` takes back
what an earlier pattern of the same list matched (as in .gitignore, a match on the file itself wins
over one on a directory above it). ``./x`` is ``/x``. ``..`` segments, backslashes and NUL are errors,
so no pattern can name anything outside the repository (and patterns only ever filter the indexed,
repository-relative paths).

Every pattern is evaluated inside DuckDB, so no row is filtered in Python: as LIKE where the pattern
is literal text in a form LIKE says exactly, else as the engine's RE2 regex.
"""

from __future__ import annotations

from typing import Sequence

import msgspec

from codeintel.errors import ScopeError
from codeintel.globs import Glob, GlobError, compile_glob
from codeintel.indexing.languages import KNOWN_LANGUAGES
from codeintel.text import is_utf8

__all__ = ["Scope", "glob_sql", "scope_sql", "validate_scope"]

_MAX_PATTERNS = 64
_MAX_PATTERN_CHARS = 512


class Scope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.include or self.exclude or self.languages)


def _glob(pattern: str) -> Glob:
    """The compiled pattern, after the rules that keep a request's glob inside the repository."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ScopeError("empty glob pattern")
    if len(pattern) > _MAX_PATTERN_CHARS:
        raise ScopeError(f"glob pattern longer than {_MAX_PATTERN_CHARS} characters")
    if "\x00" in pattern or "\\" in pattern:
        raise ScopeError(f"malformed glob {pattern!r}: backslashes and NUL are not allowed")
    if not is_utf8(pattern):
        raise ScopeError(f"malformed glob {pattern!r}: not valid UTF-8 text")
    negated = pattern.startswith("!")
    body = pattern[negated:]
    if body.startswith("./"):
        body = "/" + body[2:]  # the repository root, as a leading '/'
    if ".." in body.rstrip().split("/"):
        raise ScopeError(f"malformed glob {pattern!r}: '..' segments are not allowed")
    try:
        glob = compile_glob("!" * negated + body)
    except GlobError as exc:
        raise ScopeError(f"malformed glob {pattern!r}: {exc.reason}") from None
    if glob is None:
        hint = "a leading '#' starts a comment; write [#] for the character" if body.startswith("#") else "it matches nothing"
        raise ScopeError(f"malformed glob {pattern!r}: {hint}")
    return glob


def _globs(patterns: Sequence[str]) -> list[Glob]:
    return [_glob(p) for p in patterns]


def validate_scope(scope: Scope) -> None:
    for name, patterns in (("include", scope.include), ("exclude", scope.exclude)):
        if len(patterns) > _MAX_PATTERNS:
            raise ScopeError(f"at most {_MAX_PATTERNS} {name} patterns")
        _globs(patterns)
    if len(scope.languages) > _MAX_PATTERNS:
        raise ScopeError(f"at most {_MAX_PATTERNS} languages")
    unknown = sorted(set(scope.languages) - KNOWN_LANGUAGES)
    if unknown:
        raise ScopeError(f"unknown language(s): {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_LANGUAGES))}")


def _like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def glob_sql(glob: Glob, *, like: bool = True) -> tuple[str, list]:
    """A condition true where the glob matches ``uri``: LIKE when exactly equivalent (and allowed), else RE2."""
    form, text = glob.literal if like and glob.literal else (None, "")
    esc = _like(text)
    if form == "under":
        return "uri LIKE ? ESCAPE '!'", [esc + "%"]
    if form == "path":
        return "(uri = ? OR uri LIKE ? ESCAPE '!')", [text, esc + "/%"]
    if form == "suffix":
        return "(uri LIKE ? ESCAPE '!' OR uri LIKE ? ESCAPE '!')", ["%" + esc, "%" + esc + "/%"]
    if form == "name":
        return "(uri = ? OR uri LIKE ? ESCAPE '!' OR uri LIKE ? ESCAPE '!' OR uri LIKE ? ESCAPE '!')", [
            text, esc + "/%", "%/" + esc, "%/" + esc + "/%"]
    if form == "dir":
        return "(uri LIKE ? ESCAPE '!' OR uri LIKE ? ESCAPE '!')", [esc + "/%", "%/" + esc + "/%"]
    return "regexp_matches(uri, ?)", [glob.re2]


def _file_match_sql(glob: Glob) -> tuple[str, list] | None:
    """Where the glob matches ``uri`` itself, not a directory above it (None: never)."""
    if glob.dir_match == "always":
        return None
    if glob.dir_match == "never":
        return glob_sql(glob)
    return "(regexp_matches(uri, ?) AND regexp_extract(uri, ?, 1) = '')", [glob.re2, glob.re2]


def _globs_condition(globs: Sequence[Glob], params: list) -> str:
    """True where the pattern list matches ``uri``, as pathspec's GitIgnoreSpec decides it."""
    if all(g.include for g in globs):
        parts = [glob_sql(g) for g in globs]
        params.extend(p for _, ps in parts for p in ps)
        return "(" + " OR ".join(sql for sql, _ in parts) + ")"
    # The last pattern matching the file itself decides; failing that, the last matching a directory above it.
    whens = []
    for ranked in ([_file_match_sql(g) for g in reversed(globs)], [glob_sql(g) for g in reversed(globs)]):
        for glob, cond in zip(reversed(globs), ranked):
            if cond is not None:
                whens.append(f"WHEN {cond[0]} THEN {'TRUE' if glob.include else 'FALSE'}")
                params.extend(cond[1])
    return "(CASE " + " ".join(whens) + " ELSE FALSE END)"


def scope_sql(scope: Scope) -> tuple[str, list]:
    """A WHERE fragment (possibly 'TRUE') over columns ``uri`` and ``lang``, and its parameters."""
    validate_scope(scope)
    params: list = []
    clauses: list[str] = []
    if scope.languages:
        clauses.append("lang IN (" + ", ".join("?" for _ in scope.languages) + ")")
        params.extend(scope.languages)
    if scope.include:
        clauses.append(_globs_condition(_globs(scope.include), params))
    if scope.exclude:
        clauses.append("NOT " + _globs_condition(_globs(scope.exclude), params))
    return (" AND ".join(clauses) or "TRUE"), params
