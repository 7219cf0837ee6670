from __future__ import annotations

import functools
import random
import re

import duckdb
import hypothesis
import pytest
from hypothesis import strategies as st

from codeintel.errors import ScopeError
from codeintel.globs import GlobError, compile_glob, glob_spec
from codeintel.storage.scope import Scope, glob_sql, scope_sql

# -- one engine: pathspec's match in Python and scope_sql in DuckDB agree -------------------------

HAND_PATHS = [
    "a.py", "src/a.py", "src/pkg/b.py", "src/pkg/b.pyi", "tests/test_a.py", "tests/unit/test_b.py",
    "docs/index.md", "docs/api/ref.md", "README.md", "src/x.py/inner.txt", "srcx/a.py", "a_b.py", "a%b.py",
    "lib/src/c.py", "build/out.py", "src/build/gen.py", "logs/a.log", "logs/keep.log", "a/b/c/d.py",
    "a/x/b/y.py", "[ab].py", "!bang.py", "#notes.md", "sp ace/x.py", "a\u00e9/\u6587.py", "a]b.md",
    "new\nline/x.py", "tab\t.py", "vendor/lib/a.js", "deep/a/b/c/src/z.py",
]
HAND_PATTERNS = [
    "*.py", "src/", "/src/", "src/**", "src/**/*.py", "tests/test_*.py", "docs/*.md", "**/test_*.py",
    "README.md", "src/pkg/b.py", "[ab]*.py", "?.py", "a_b.py", "a%b.py", "**/*.md", "src/*/b.py", "docs/*",
    "/*", "*", "**", "*/", "**/", "a/**/b", "a/**/b/*.py", "build", "/build/", "x.py", "[!a]*.py", "[]a]*",
    "a**b", "src**", "*.min.js", "[+-0]*", "a]b.md", "line/*", "\u6587.py", "sp ace/", "[#]notes.md", "!bang.py", "[]!]bang.py",
]
NEGATED_LISTS = [
    ("*.py", "!tests/"),  # a directory negation does not take back a file match
    ("src/", "!src/pkg/"),
    ("logs/", "!logs/keep.log"),
    ("*.log", "!keep.log", "logs/"),
    ("!*.md",),  # only negations: matches nothing
    ("**", "!*.py", "src/pkg/*.py"),
    ("a/", "!a/b/", "a/b/c/"),
]


def _random_paths(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    dirs = ["a", "b", "src", "x.py", "test_a", "\u00e9", "a_b", "c%d", "sp ace", "[a]", "!a", "#d"]
    files = ["a.py", "b.md", "test_a.py", "x.pyi", "ab", "a", "src", "\u6587.py", "k_1.log", "%.py"]
    return sorted({"/".join([*rng.choices(dirs, k=rng.randint(0, 3)), rng.choice(files)]) for _ in range(count)})


PATHS = sorted(set(HAND_PATHS) | set(_random_paths(seed=12, count=300)))


def _lang(uri: str) -> str:
    return "python" if uri.endswith((".py", ".pyi")) else "markdown" if uri.endswith(".md") else "text"


@functools.cache
def _paths_db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE chunks(uri VARCHAR NOT NULL, lang VARCHAR NOT NULL)")
    con.executemany("INSERT INTO chunks VALUES (?, ?)", [(u, _lang(u)) for u in PATHS])
    return con


def sql_selected(scope: Scope) -> set[str]:
    where, params = scope_sql(scope)
    return {r[0] for r in _paths_db().execute(f"SELECT uri FROM chunks WHERE {where}", params).fetchall()}


def py_selected(scope: Scope) -> set[str]:
    """The reference: pathspec's gitignore match in Python, pattern list by pattern list."""
    include = glob_spec(scope.include) if scope.include else None
    exclude = glob_spec(scope.exclude) if scope.exclude else None
    return {
        u for u in PATHS
        if (not scope.languages or _lang(u) in scope.languages)
        and (include is None or include.match_file(u))
        and not (exclude is not None and exclude.match_file(u))
    }


def assert_agree(patterns: tuple[str, ...]) -> None:
    for scope in (Scope(include=patterns), Scope(exclude=patterns), Scope(include=patterns, languages=("python",))):
        assert sql_selected(scope) == py_selected(scope), scope


@pytest.mark.parametrize("pattern", HAND_PATTERNS)
def test_each_hand_picked_glob_agrees_in_python_and_duckdb(pattern):
    assert_agree((pattern,))
    assert_agree(("!" + pattern, pattern))
    assert_agree((pattern, "!" + pattern))


@pytest.mark.parametrize("patterns", NEGATED_LISTS)
def test_negated_pattern_lists_agree_in_python_and_duckdb(patterns):
    assert_agree(patterns)
    assert_agree(tuple(reversed(patterns)))


def test_scopes_combining_include_exclude_and_languages_agree():
    rng = random.Random(5)
    for _ in range(100):
        scope = Scope(
            include=tuple(rng.sample(HAND_PATTERNS, rng.randint(0, 3))),
            exclude=tuple(rng.sample(HAND_PATTERNS, rng.randint(0, 2))),
            languages=tuple(rng.sample(["python", "markdown", "text"], rng.randint(0, 2))),
        )
        assert sql_selected(scope) == py_selected(scope), scope


_SEGMENT_PARTS = ["a", "b", "src", "x", ".py", ".md", "*", "?", "**", "[ab]", "[!a]", "[a-c]", "test_", "\u00e9", "%", "_", "!", "#", " ", "[]a]", "[+-0]"]
_segment = st.lists(st.sampled_from(_SEGMENT_PARTS), min_size=1, max_size=3).map("".join)
_affixes = (st.sampled_from(["", "", "!"]), st.sampled_from(["", "", "/", "**/"]), st.sampled_from(["", "", "/", "/**"]))
_token_glob = st.builds(lambda neg, lead, trail, segs: neg + lead + "/".join(segs) + trail, *_affixes, st.lists(_segment, min_size=1, max_size=4))


@st.composite
def _path_glob(draw) -> str:
    """A path of the corpus with wildcards put in, so that most generated globs match some paths."""
    segs = draw(st.sampled_from(PATHS)).split("/")
    for edit in draw(st.lists(st.sampled_from(["*", "?", "[", "[!", "**", "head", "tail"]), max_size=4)):
        i = draw(st.integers(0, len(segs) - 1))
        seg = segs[i]
        a = draw(st.integers(0, max(len(seg) - 1, 0)))
        if edit == "*":
            segs[i] = seg[:a] + "*" + seg[draw(st.integers(a, len(seg))):]
        elif edit in ("?", "[", "[!") and seg:
            segs[i] = seg[:a] + {"?": "?", "[": f"[{seg[a]}x]", "[!": "[!x]"}[edit] + seg[a + 1:]
        elif edit == "**":
            segs[i] = "**"
        elif len(segs) > 1:
            segs = segs[1:] if edit == "head" else segs[:-1]
    neg, lead, trail = (draw(a) for a in _affixes)
    return neg + lead + "/".join(segs) + trail


glob_patterns = st.one_of(_path_glob(), _token_glob)


@hypothesis.settings(max_examples=500, deadline=None, database=None, derandomize=True)
@hypothesis.given(st.lists(glob_patterns, min_size=1, max_size=4).map(tuple))
def test_generated_glob_lists_agree_in_python_and_duckdb(patterns):
    try:
        scope_sql(Scope(include=patterns))
    except ScopeError:
        hypothesis.assume(False)
    assert_agree(patterns)


# -- the dialects: each glob's Python regex and RE2 regex, and its LIKE form, agree on any string --

ODD_STRINGS = ["", "/", "//", "/a.py", "a//b.py", "a.py/", "./a.py", "a\n", "\n/a.py", "a.py\n", "%", "_", "!", "a!b.py", "x/y/"]


def _over(strings: list[str], select: str, params: list) -> list[tuple]:
    """``select`` (over column ``uri``) for each string, in order, in one DuckDB query."""
    sql = f"SELECT {select} FROM (SELECT unnest(?::VARCHAR[]) AS uri, unnest(range(?)) AS i) ORDER BY i"
    return _paths_db().execute(sql, [*params, strings, len(strings)]).fetchall()


def _regex_agrees(glob, strings: list[str]) -> None:
    """Python's re.search and its ps_d group (pathspec's directory mark) equal RE2's in DuckDB."""
    in_sql = _over(strings, "regexp_matches(uri, ?), regexp_extract(uri, ?, 1)", [glob.re2, glob.re2])
    for s, row in zip(strings, in_sql):
        m = re.search(glob.regex, s)
        assert row == (m is not None, (m.groupdict().get("ps_d") or "") if m else ""), (glob.pattern, s)


def _like_agrees(glob, strings: list[str]) -> None:
    like_sql, like_params = glob_sql(glob)
    regex_sql, regex_params = glob_sql(glob, like=False)
    assert regex_sql == "regexp_matches(uri, ?)"
    for s, (a, b) in zip(strings, _over(strings, f"{like_sql}, {regex_sql}", [*like_params, *regex_params])):
        assert a == b, (glob.pattern, like_sql, s)


@pytest.mark.parametrize("pattern", HAND_PATTERNS)
def test_python_regex_re2_regex_and_like_agree_on_any_string(pattern):
    glob = compile_glob(pattern)
    _regex_agrees(glob, PATHS + ODD_STRINGS)
    _like_agrees(glob, PATHS + ODD_STRINGS)


@hypothesis.settings(max_examples=300, deadline=None, database=None, derandomize=True)
@hypothesis.given(glob_patterns, st.lists(st.text(st.sampled_from(list("ab/.%_!\n\u00e9 ")), max_size=8), max_size=10))
def test_generated_globs_agree_across_dialects_on_any_string(pattern, strings):
    try:
        glob = compile_glob(pattern)
    except GlobError:
        hypothesis.assume(False)
    hypothesis.assume(glob is not None)
    _regex_agrees(glob, strings + ODD_STRINGS)
    _like_agrees(glob, strings + ODD_STRINGS)


def test_like_is_used_where_exact():
    assert glob_sql(compile_glob("*.py")) == ("(uri LIKE ? ESCAPE '!' OR uri LIKE ? ESCAPE '!')", ["%.py", "%.py/%"])
    assert glob_sql(compile_glob("src/**"))[1] == ["src/%"]
    assert glob_sql(compile_glob("/src/"))[1] == ["src/%"]
    assert glob_sql(compile_glob("src/a_b.py"))[1] == ["src/a_b.py", "src/a!_b.py/%"]
    assert glob_sql(compile_glob("a%b.py"))[1] == ["a%b.py", "a!%b.py/%", "%/a!%b.py", "%/a!%b.py/%"]
    assert glob_sql(compile_glob("vendor/"))[1] == ["vendor/%", "%/vendor/%"]
    for pattern in ("tests/test_*.py", "?.py", "[ab].py", "a/**/b", "docs/*"):
        assert glob_sql(compile_glob(pattern))[0] == "regexp_matches(uri, ?)"


# -- what the rules are ----------------------------------------------------------------------------


def matched(pattern: str) -> list[str]:
    return sorted(sql_selected(Scope(include=(pattern,))) & set(HAND_PATHS))


def test_gitignore_semantics():
    assert "src/x.py/inner.txt" in matched("*.py")  # a directory named x.py, and so everything in it
    assert "lib/src/c.py" in matched("src/") and "srcx/a.py" not in matched("src/")  # any depth, whole names
    assert matched("/src/") == matched("src/**") == ["src/a.py", "src/build/gen.py", "src/pkg/b.py", "src/pkg/b.pyi", "src/x.py/inner.txt"]
    assert matched("src/*/b.py") == ["src/pkg/b.py"]
    assert matched("tests/test_*.py") == ["tests/test_a.py"]
    assert matched("docs/*") == ["docs/api/ref.md", "docs/index.md"]  # docs/api matches, so all below it
    assert matched("a/**/b/*.py") == ["a/x/b/y.py"]
    assert matched("build") == ["build/out.py", "src/build/gen.py"]
    assert matched("/build") == ["build/out.py"]
    assert matched("src**") == matched("src*") == [  # '**' inside a name is '*'
        "deep/a/b/c/src/z.py", "lib/src/c.py", "src/a.py", "src/build/gen.py", "src/pkg/b.py", "src/pkg/b.pyi", "src/x.py/inner.txt", "srcx/a.py"]
    assert matched("a[!_]x/b/y.py") == matched("a[+-0]x/b/y.py") == []  # [...] never matches '/'
    assert matched("*line/x.py") == matched("new?line") == matched("*line") == ["new\nline/x.py"]  # nor does '\n' end a name
    assert matched("[#]notes.md") == ["#notes.md"]  # a leading '#' would start a comment
    assert matched("!bang.py") == [] and matched("[]!]bang.py") == ["!bang.py"]  # a leading '!' negates


def test_negation_takes_back_what_an_earlier_pattern_matched():
    assert sql_selected(Scope(include=("src/", "!src/pkg/"))) >= {"src/a.py"}
    assert not sql_selected(Scope(include=("src/", "!src/pkg/"))) & {"src/pkg/b.py", "src/pkg/b.pyi"}
    # as in .gitignore, un-matching a directory does not un-match files a file pattern matched
    assert "tests/test_a.py" in sql_selected(Scope(include=("*.py", "!tests/")))
    # scopes filter files, so unlike the walk (which never enters an excluded directory) they can take one back
    kept = sql_selected(Scope(exclude=("logs/", "!logs/keep.log")))
    assert "logs/keep.log" in kept and "logs/a.log" not in kept


@pytest.mark.parametrize(
    "bad, message",
    [
        ("", "empty glob"), ("   ", "empty glob"), ("src/[abc", "malformed glob .*unclosed"), ("src/[oops", "malformed glob"),
        ("[]", "malformed glob"), ("[z-a]", "malformed glob .*bad character range"), ("!", "malformed glob"),
        ("#x", "comment"), ("/", "matches nothing"), ("../etc/passwd", "'..' segments are not allowed"),
        ("src/../../x", "'..' segments are not allowed"), ("!../x", "'..' segments"), (".. ", "'..' segments"),
        ("a\\b", "backslashes and NUL"),
    ],
)
def test_malformed_globs_are_errors(bad, message):
    with pytest.raises(ScopeError, match=message):
        scope_sql(Scope(include=(bad,)))


def test_unknown_language_is_an_error():
    with pytest.raises(ScopeError, match="unknown language"):
        scope_sql(Scope(languages=("python", "klingon")))


def test_scope_sql_parameterizes_everything():
    where, params = scope_sql(Scope(include=("src/**", "tests/test_*.py"), exclude=("*.pyi",), languages=("python",)))
    assert "'" not in where.replace("ESCAPE '!'", "").replace("= ''", "")
    assert params == ["python", "src/%", compile_glob("tests/test_*.py").re2, "%.pyi", "%.pyi/%"]
    where, params = scope_sql(Scope(exclude=("logs/", "!logs/keep.log")))
    assert "'" not in where.replace("ESCAPE '!'", "").replace("= ''", "") and "logs/keep.log" in params


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
    assert selected(Scope(include=("/*",))) == sorted(REPO_URIS)  # every top-level entry, and so all below them
    assert selected(Scope(include=("/src/*.py",))) == ["src/a.py"]
    assert selected(Scope(include=("**",))) == sorted(REPO_URIS)  # everything is at most the repository
    assert selected(Scope(include=("./src/**",))) == ["src/a.py", "src/pkg/b.py"]
    assert selected(Scope(include=("./a.py",))) == []  # './' anchors at the root, like '/'
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
    negated = tuple("!" * (i % 2) + p for i, p in enumerate(worst))  # the CASE form, two regexes a pattern
    assert selected(Scope(include=negated, exclude=negated)) == []


def test_any_glob_is_a_scope_error_or_runs_in_duckdb():
    """Python's re and DuckDB's RE2 differ; a glob accepted here must never become a SQL error (HTTP 500)."""
    alphabet = st.sampled_from(list("ab/*?[]!^-.\\%_:{}()|+$\x00 \u00e9\n#&~=") + ["**", "..", "[:alpha:]", "[[:alpha:]]", "\\d", "(?i)", "\\p{L}", "[=a=]", "[--]"])

    @hypothesis.settings(max_examples=400, deadline=None, database=None, derandomize=True)
    @hypothesis.given(st.lists(alphabet, max_size=12).map("".join))
    def check(pattern):
        try:
            uris = selected(Scope(include=(pattern,)))
        except ScopeError:
            return
        assert set(uris) <= set(REPO_URIS)
        _regex_agrees(compile_glob(pattern), REPO_URIS + ODD_STRINGS)  # (scope.py reads a leading './' as '/')

    check()
