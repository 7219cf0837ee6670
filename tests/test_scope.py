from __future__ import annotations

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
