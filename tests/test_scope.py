from __future__ import annotations

import functools
import re

import duckdb
import pytest

from codeintel.errors import ScopeError
from codeintel.storage.scope import Scope, glob_to_like, glob_to_regex, scope_sql

PATHS = [
    "a.py", "src/a.py", "src/pkg/b.py", "src/pkg/b.pyi", "tests/test_a.py", "tests/unit/test_b.py",
    "docs/index.md", "docs/api/ref.md", "README.md", "src/x.py/inner.txt", "srcx/a.py", "a_b.py", "a%b.py",
]
PATTERNS = [
    "*.py", "src/", "src/**", "src/**/*.py", "tests/test_*.py", "docs/*.md", "**/test_*.py",
    "README.md", "src/pkg/b.py", "[ab]*.py", "?.py", "a_b.py", "a%b.py", "**/*.md", "src/*/b.py",
]


def like_match(like: str, path: str) -> bool:
    return duckdb.execute("SELECT ? LIKE ? ESCAPE '!'", [path, like]).fetchone()[0]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_like_and_regex_agree_with_each_other_in_duckdb(pattern):
    regex = glob_to_regex(pattern)
    expected = [p for p in PATHS if re.fullmatch(regex, p)]
    in_sql = [p for p in PATHS if duckdb.execute("SELECT regexp_full_match(?, ?)", [p, regex]).fetchone()[0]]
    assert in_sql == expected
    like = glob_to_like(pattern)
    if like is not None:
        assert [p for p in PATHS if like_match(like, p)] == expected


def test_glob_semantics():
    def m(pattern):
        return [p for p in PATHS if re.fullmatch(glob_to_regex(pattern), p)]

    assert m("*.py") == ["a.py", "src/a.py", "src/pkg/b.py", "tests/test_a.py", "tests/unit/test_b.py", "srcx/a.py", "a_b.py", "a%b.py"]
    assert m("src/*/b.py") == ["src/pkg/b.py"]
    assert m("tests/test_*.py") == ["tests/test_a.py"]
    assert m("src/") == ["src/a.py", "src/pkg/b.py", "src/pkg/b.pyi", "src/x.py/inner.txt"]


def test_like_used_where_exact():
    assert glob_to_like("*.py") == "%.py"
    assert glob_to_like("src/**") == "src/%"
    assert glob_to_like("a_b.py") is None  # basename at any depth is not a LIKE
    assert glob_to_like("src/a_b.py") == "src/a!_b.py"
    assert glob_to_like("tests/test_*.py") is None


@pytest.mark.parametrize("bad", ["", "   ", "src/[abc", "a]b", "../etc/passwd", "src/../../x", "a\\b", "[]"])
def test_malformed_globs_are_errors(bad):
    with pytest.raises(ScopeError):
        glob_to_regex(bad)


def test_unknown_language_is_an_error():
    with pytest.raises(ScopeError, match="unknown language"):
        scope_sql(Scope(languages=("python", "klingon")))


def test_scope_sql_parameterizes_everything():
    where, params = scope_sql(Scope(include=("src/**", "tests/test_*.py"), exclude=("*.pyi",), languages=("python",)))
    assert "'" not in where.replace("ESCAPE '!'", "")
    assert params == ["python", "src/%", glob_to_regex("tests/test_*.py"), "%.pyi"]


# -- adversarial scopes: rejected with a ScopeError (HTTP 400, CLI exit 2) or harmless ------------

REPO_URIS = ["etc/passwd", "src/a.py", "src/pkg/b.py", "docs/x.md", "a\u00e9/\u6587.py"]


@functools.cache
def _repo_db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE chunks(uri VARCHAR, lang VARCHAR)")
    con.executemany("INSERT INTO chunks VALUES (?, ?)", [(u, "python" if u.endswith(".py") else "text") for u in REPO_URIS])
    return con


def selected(scope: Scope) -> list[str]:
    con = _repo_db()
    where, params = scope_sql(scope)
    return [r[0] for r in con.execute(f"SELECT uri FROM chunks WHERE {where} ORDER BY uri", params).fetchall()]


@pytest.mark.parametrize(
    "bad",
    ["../../etc/*", "**/../..", "src/../../../etc/passwd", "..", "a/..", "/../etc/passwd", "etc/passwd\x00.py", "a\x00", "..\\..\\etc", "x" * 513],
)
def test_traversal_nul_and_oversized_globs_are_rejected(bad):
    for scope in (Scope(include=(bad,)), Scope(exclude=(bad,))):
        with pytest.raises(ScopeError):
            scope_sql(scope)


def test_absolute_globs_are_repo_relative_and_match_nothing_outside():
    assert selected(Scope(include=("/etc/passwd",))) == ["etc/passwd"]  # the repo's own etc/passwd, not the host's
    assert selected(Scope(include=("//src//",))) == []  # empty segments: no match, no error
    assert selected(Scope(include=("/*",))) == []  # anchored at the root, where this repository has only folders
    assert selected(Scope(include=("/src/*.py",))) == ["src/a.py"]
    assert selected(Scope(include=("**",))) == sorted(REPO_URIS)  # everything is at most the repository
    assert selected(Scope(include=("./src/**",))) == ["src/a.py", "src/pkg/b.py"]
    assert selected(Scope(include=("a\u00e9/*.py",))) == ["a\u00e9/\u6587.py"]


def test_enormous_glob_lists_and_language_lists_are_rejected():
    with pytest.raises(ScopeError, match="at most 64 include patterns"):
        scope_sql(Scope(include=("*.py",) * 65))
    with pytest.raises(ScopeError, match="at most 64 exclude patterns"):
        scope_sql(Scope(exclude=tuple(f"d{i}/" for i in range(100_000))))
    with pytest.raises(ScopeError, match="at most 64 languages"):
        scope_sql(Scope(languages=("python",) * 65))
    # the largest allowed scope: 64 patterns of 512 characters, built to backtrack; RE2 in DuckDB is linear
    worst = tuple(("*a" * 255)[: 511 - i % 3] + "b" for i in range(64))
    assert selected(Scope(include=worst, exclude=worst)) == []


def test_any_glob_is_a_scope_error_or_runs_in_duckdb():
    """Python's re and DuckDB's RE2 differ; a glob accepted here must never become a SQL error (HTTP 500)."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    alphabet = st.sampled_from(list("ab/*?[]!^-.\\%_:{}()|+$\x00 \u00e9\n") + ["**", "..", "[:alpha:]", "\\d", "(?i)", "\\p{L}"])

    @hypothesis.settings(max_examples=400, deadline=None, database=None, derandomize=True)
    @hypothesis.given(st.lists(alphabet, max_size=12).map("".join))
    def check(pattern):
        try:
            uris = selected(Scope(include=(pattern,)))
        except ScopeError:
            return
        assert set(uris) <= set(REPO_URIS)

    check()
