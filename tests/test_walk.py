from __future__ import annotations

import functools
import os
import subprocess

import duckdb
import hypothesis
import pytest
from hypothesis import strategies as st

from codeintel.config import WalkSettings
from codeintel.errors import InputError, ScopeError
from codeintel.globs import glob_spec
from codeintel.indexing.walk import SourceFile, discover, load, repo_info
from codeintel.storage.scope import Scope, scope_sql

from conftest import git_init, write_tree
from test_scope import HAND_PATTERNS, NEGATED_LISTS, PATHS, glob_patterns


def uris(result):
    return [c.uri for c in result.candidates]


def test_gitignore_root_and_nested_and_default_excludes(tmp_path):
    root = write_tree(
        tmp_path,
        {
            ".gitignore": "*.log\nsecret/\n",
            "src/a.py": "a = 1\n",
            "src/.gitignore": "generated_*.py\n",
            "src/generated_x.py": "x = 1\n",
            "src/keep.py": "k = 1\n",
            "secret/key.py": "k = 2\n",
            "debug.log": "noise\n",
            "node_modules/lib/index.js": "module.exports = 1\n",
            "build/out.py": "o = 1\n",
            "pkg/app.min.js": "var a=1;\n",
        },
    )
    result = discover(root, WalkSettings())
    assert uris(result) == [".gitignore", "src/.gitignore", "src/a.py", "src/keep.py"]
    reasons = {s.uri: s.reason for s in result.skipped}
    assert reasons["src/generated_x.py"] == "ignored"
    assert reasons["debug.log"] == "ignored"
    assert reasons["pkg/app.min.js"] == "ignored"


def test_gitignore_can_be_disabled_and_extra_excludes_apply(tmp_path):
    root = write_tree(tmp_path, {".gitignore": "*.txt\n", "a.txt": "x\n", "docs/b.md": "# b\n", "c.py": "c = 1\n"})
    result = discover(root, WalkSettings(respect_gitignore=False, extra_exclude=("docs/",)))
    assert uris(result) == [".gitignore", "a.txt", "c.py"]


def test_files_gitattributes_marks_generated_or_vendored_are_skipped(tmp_path):
    root = write_tree(tmp_path, {
        ".gitattributes": "# results\n\nresults/** linguist-generated\nthird/*.py linguist-vendored=true\n"
                          "keep/*.py -linguist-generated\n*.py text eol=lf\n",
        "results/run.json": "{}\n", "results/deep/a.md": "# a\n", "third/lib.py": "x = 1\n",
        "keep/k.py": "k = 1\n", "src/a.py": "a = 1\n",
    })
    result = discover(root, WalkSettings())
    assert uris(result) == [".gitattributes", "keep/k.py", "src/a.py"]
    assert {s.uri: s.reason for s in result.skipped} == {"results/run.json": "generated", "results/deep/a.md": "generated",
                                                         "third/lib.py": "generated"}
    assert "results/run.json" in uris(discover(root, WalkSettings(respect_gitattributes=False)))


def test_skips_binary_large_minified_data_and_symlinks_with_reasons(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "ok.py": "print('hi')\n",
            "image.png": b"\x89PNG\r\n",
            "blob.py": b"abc\x00def\n",
            "big.py": "x = 1\n" * 400,
            "bundle.js": "var a=" + "1," * 2000 + "0;\n",
            "data.csv": "a,b\n1,2\n",
            "results.json": "[" + "1," * 400 + "1]\n",
            "small.json": '{"a": 1}\n',
            "empty.py": "",
        },
    )
    os.symlink(root / "ok.py", root / "link.py")
    os.symlink(root, root / "loop")  # a symlink loop must not hang the walk
    settings = WalkSettings(max_file_bytes=1000, max_data_file_bytes=500)
    result = discover(root, settings)
    loaded = [load(c, settings) for c in result.candidates]
    files = [f.uri for f in loaded if isinstance(f, SourceFile)]
    reasons = {s.uri: s.reason for s in result.skipped} | {s.uri: s.reason for s in loaded if not isinstance(s, SourceFile)}
    assert files == ["ok.py", "small.json"]
    assert reasons == {
        "image.png": "binary",
        "blob.py": "binary",
        "big.py": "too large",
        "bundle.js": "too large" if len("var a=" + "1," * 2000) > 1000 else "minified",
        "data.csv": "data",
        "results.json": "large data file",
        "empty.py": "empty",
        "link.py": "symlink",
        "loop": "symlink",
    }


def test_minified_detected_by_line_length(tmp_path):
    root = write_tree(tmp_path, {"bundle.js": "var a=" + "1," * 2000 + "0;\n"})
    settings = WalkSettings()
    [candidate] = discover(root, settings).candidates
    assert load(candidate, settings).reason == "minified"


def test_file_deleted_between_discovery_and_read(tmp_path):
    root = write_tree(tmp_path, {"a.py": "a = 1\n"})
    [candidate] = discover(root, WalkSettings()).candidates
    (root / "a.py").unlink()
    assert load(candidate, WalkSettings()).reason == "deleted during indexing"


def test_language_from_extension(tmp_path):
    root = write_tree(tmp_path, {"a.py": "a=1\n", "b.ts": "let b = 1;\n", "Makefile": "all:\n", "notes": "plain\n"})
    settings = WalkSettings()
    langs = {f.uri: f.lang for f in (load(c, settings) for c in discover(root, settings).candidates)}
    assert langs == {"a.py": "python", "b.ts": "typescript", "Makefile": "make", "notes": "text"}


def test_repo_info_git_and_plain(tmp_path):
    plain = write_tree(tmp_path / "plain", {"a.py": "a = 1\n"})
    info = repo_info(plain)
    assert (info.name, info.commit) == ("plain", None)
    repo = write_tree(tmp_path / "checkout", {"a.py": "a = 1\n"})
    commit = git_init(repo, remote="git@github.com:acme/widgets.git")
    info = repo_info(repo)
    assert (info.name, info.commit) == ("acme/widgets", commit)
    local = write_tree(tmp_path / "clone", {"b.py": "b = 1\n"})
    git_init(local, remote=str(repo) + "/.")
    assert repo_info(local).name == "clone"  # a local-path remote says nothing about the name


def test_repo_info_rejects_missing_and_non_directories(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        repo_info(tmp_path / "nope")
    (tmp_path / "file.py").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        repo_info(tmp_path / "file.py")


# -- adversarial trees -------------------------------------------------------------------------


def load_all(root, settings=WalkSettings()):
    result = discover(root, settings)
    loaded = [load(c, settings) for c in result.candidates]
    files = {f.uri: f for f in loaded if isinstance(f, SourceFile)}
    reasons = {s.uri: s.reason for s in result.skipped} | {s.uri: s.reason for s in loaded if not isinstance(s, SourceFile)}
    return files, reasons


def test_invalid_utf8_is_indexed_with_replacement_and_exact_lines(tmp_path):
    latin1 = "# caf\xe9 cr\xe8me\ndef latin_function():\n    return '\xe9t\xe9'\n".encode("latin-1")
    root = write_tree(tmp_path, {
        "legacy.py": latin1,
        "stray.txt": b"ok line\n\xff\xfe broken \xc3 bytes\nlast line\n",
        "garbage.txt": bytes(range(0x80, 0x100)) * 40,  # no NUL, but nothing in it is UTF-8
        "utf16.txt": "hello".encode("utf-16"),  # NUL bytes: binary
        "fffd.txt": "a literal \ufffd\ufffd\ufffd is text\n".encode(),
    })
    files, reasons = load_all(root)
    assert sorted(files) == ["fffd.txt", "legacy.py", "stray.txt"]
    assert reasons == {"garbage.txt": "binary", "utf16.txt": "binary"}
    legacy = files["legacy.py"]
    assert legacy.text.splitlines() == ["# caf\ufffd cr\ufffdme", "def latin_function():", "    return '\ufffdt\ufffd'"]
    assert files["stray.txt"].text.count("\n") == 3  # replacement never eats a newline: line numbers stay exact
    assert legacy.size == len(latin1)


def test_fifo_and_sockets_are_skipped_as_special_files(tmp_path):
    import socket

    root = write_tree(tmp_path / "repo", {"a.py": "a = 1\n"})
    os.mkfifo(root / "pipe.py")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "server.sock"))
        files, reasons = load_all(root)
    finally:
        sock.close()
    assert list(files) == ["a.py"]
    assert reasons == {"pipe.py": "special file", "server.sock": "special file"}


@pytest.mark.timeout(30)
def test_file_swapped_for_a_fifo_after_discovery_does_not_block(tmp_path):
    root = write_tree(tmp_path, {"a.py": "a = 1\n"})
    [candidate] = discover(root, WalkSettings()).candidates
    (root / "a.py").unlink()
    os.mkfifo(root / "a.py")  # opening a FIFO for reading would wait for a writer forever
    assert load(candidate, WalkSettings()).reason == "special file"


def test_symlinks_out_of_the_repo_and_loops_are_never_followed(tmp_path):
    outside = write_tree(tmp_path / "outside", {"secret.py": "PASSWORD = 'hunter2'\n", "deep/more.py": "x = 1\n"})
    root = write_tree(tmp_path / "repo", {"src/a.py": "a = 1\n"})
    os.symlink(outside, root / "escape")  # directory outside the repo
    os.symlink(outside / "secret.py", root / "src" / "secret.py")  # file outside the repo
    os.symlink("..", root / "src" / "parent")  # loop: src/parent/src/parent/...
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")  # a symlink cycle that resolves nowhere
    os.symlink("/nonexistent/target", root / "dangling.py")
    files, reasons = load_all(root)
    assert list(files) == ["src/a.py"]
    assert reasons == {u: "symlink" for u in ("escape", "src/secret.py", "src/parent", "loop_a", "loop_b", "dangling.py")}


def test_file_or_directory_swapped_for_a_symlink_after_discovery_is_not_read(tmp_path):
    outside = write_tree(tmp_path / "outside", {"a.py": "SECRET = 1\n", "pkg/b.py": "SECRET = 2\n"})
    root = write_tree(tmp_path / "repo", {"a.py": "a = 1\n", "pkg/b.py": "b = 1\n"})
    settings = WalkSettings()
    candidates = {c.uri: c for c in discover(root, settings).candidates}
    (root / "a.py").unlink()
    os.symlink(outside / "a.py", root / "a.py")
    (root / "pkg" / "b.py").unlink()
    (root / "pkg").rmdir()
    os.symlink(outside / "pkg", root / "pkg")  # a directory on the way now leads out of the repository
    assert load(candidates["a.py"], settings).reason == "symlink"
    assert load(candidates["pkg/b.py"], settings).reason == "symlink"


def test_file_that_grew_after_discovery_is_not_read_whole(tmp_path):
    root = write_tree(tmp_path, {"a.py": "a = 1\n"})
    settings = WalkSettings(max_file_bytes=10_000)
    [candidate] = discover(root, settings).candidates
    (root / "a.py").write_text("a = 1\n" * 100_000)
    assert load(candidate, settings).reason == "too large"


def test_file_replaced_by_a_directory_or_unreadable_is_skipped(tmp_path):
    root = write_tree(tmp_path, {"a.py": "a = 1\n", "b.py": "b = 1\n"})
    settings = WalkSettings()
    a, b = discover(root, settings).candidates
    (root / "a.py").unlink()
    (root / "a.py").mkdir()
    assert load(a, settings).reason == "special file"
    (root / "b.py").chmod(0)
    try:
        if os.geteuid() != 0:  # root reads anything
            assert load(b, settings).reason == "unreadable"
    finally:
        (root / "b.py").chmod(0o644)


def test_deep_nesting_does_not_exhaust_the_stack(tmp_path):
    import sys

    depth = sys.getrecursionlimit() + 100
    levels = [tmp_path]
    for _ in range(depth):
        levels.append(levels[-1] / "d")
        levels[-1].mkdir()  # os.makedirs recurses per level itself
    (levels[-1] / "deep.py").write_text("x = 1\n")
    try:
        result = discover(tmp_path, WalkSettings())
        assert uris(result) == ["d/" * depth + "deep.py"]
    finally:  # bottom-up: pytest's own tmp cleanup (shutil.rmtree on 3.11) recurses per level and would fail
        (levels[-1] / "deep.py").unlink()
        for level in reversed(levels[1:]):
            level.rmdir()


def test_undecodable_names_are_skipped_with_a_readable_reason(tmp_path):
    root = write_tree(tmp_path, {"ok.py": "a = 1\n"})
    with open(os.fsencode(root) + b"/bad\xff.py", "wb") as f:
        f.write(b"b = 1\n")
    os.mkdir(os.fsencode(root) + b"/dir\xfe")
    with open(os.fsencode(root) + b"/dir\xfe/inner.py", "wb") as f:
        f.write(b"c = 1\n")
    files, reasons = load_all(root)
    assert list(files) == ["ok.py"]
    assert reasons == {"bad\\xff.py": "undecodable name", "dir\\xfe": "undecodable name"}
    for uri in reasons:
        uri.encode("utf-8")  # reports can be printed and written as JSON


def test_repo_path_that_is_not_utf8_is_an_input_error(tmp_path):
    bad = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(bad)
    with pytest.raises(InputError, match=r"not valid UTF-8: .*caf\\xe9"):
        repo_info(os.fsdecode(bad))


def test_invalid_gitignore_patterns_are_dropped_and_symlinked_gitignore_is_not_read(tmp_path):
    outside = write_tree(tmp_path / "outside", {"ignore": "*.py\n"})
    root = write_tree(tmp_path / "repo", {".gitignore": "!\n[z-a]\n[oops\n*.log\n", "a.py": "a = 1\n", "x.log": "x\n", "sub/b.py": "b = 1\n"})
    os.symlink(outside / "ignore", root / "sub" / ".gitignore")  # git does not follow it either
    result = discover(root, WalkSettings())
    assert uris(result) == [".gitignore", "a.py", "sub/b.py"]  # bad lines dropped (as git does), *.log still applies
    with pytest.raises(InputError, match=r"malformed exclude pattern '\[z-a\]'"):
        discover(root, WalkSettings(extra_exclude=("[z-a]",)))
    with pytest.raises(InputError, match=r"malformed exclude pattern 'src/\[oops': unclosed '\['"):
        discover(root, WalkSettings(extra_exclude=("src/[oops",)))  # pathspec alone would drop it silently


# -- excludes and search scopes: one glob engine, the same files -----------------------------------

# the scope tests' corpus, less the paths a directory of another path would shadow on disk
WALK_FILES = sorted(p for p in PATHS if not any(q.startswith(p + "/") for q in PATHS))


@pytest.fixture(scope="module")
def glob_tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("globs"), {f: "x = 1\n" for f in WALK_FILES})


def walk_kept(root, patterns) -> set[str]:
    result = discover(root, WalkSettings(exclude=(), extra_exclude=patterns, respect_gitignore=False))
    return {c.uri for c in result.candidates} | {s.uri for s in result.skipped if s.reason != "ignored"}


@functools.cache
def _files_db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE chunks(uri VARCHAR, lang VARCHAR)")
    con.executemany("INSERT INTO chunks VALUES (?, 'text')", [(f,) for f in WALK_FILES])
    return con


def scope_kept(patterns) -> set[str]:
    where, params = scope_sql(Scope(exclude=patterns))
    return {r[0] for r in _files_db().execute(f"SELECT uri FROM chunks WHERE {where}", params).fetchall()}


def pruned_kept(patterns) -> set[str]:
    """git's rule: a file is excluded when the spec matches it or a directory above it (never entered)."""
    spec = glob_spec(patterns)

    def excluded(f: str) -> bool:
        parts = f.split("/")
        return any(spec.match_file("/".join(parts[:k]) + "/") for k in range(1, len(parts))) or spec.match_file(f)
    return {f for f in WALK_FILES if not excluded(f)}


def assert_walk_agrees(root, patterns) -> None:
    walked = walk_kept(root, patterns)
    assert walked == pruned_kept(patterns), patterns
    scoped = scope_kept(patterns)
    if any(p.startswith("!") for p in patterns):
        assert walked <= scoped  # a scope can take back a file below an excluded directory; the walk never enters it
    else:
        assert walked == scoped, patterns


@pytest.mark.parametrize("pattern", HAND_PATTERNS)
def test_walk_excludes_what_a_scope_excludes(glob_tree, pattern):
    assert_walk_agrees(glob_tree, (pattern,))


@pytest.mark.parametrize("patterns", NEGATED_LISTS)
def test_walk_with_negated_excludes_follows_git(glob_tree, patterns):
    assert_walk_agrees(glob_tree, patterns)


def test_walk_cannot_take_back_a_file_below_an_excluded_directory_but_a_scope_can(glob_tree):
    patterns = ("logs/", "!logs/keep.log")
    assert not {"logs/a.log", "logs/keep.log"} & walk_kept(glob_tree, patterns)
    assert "logs/keep.log" in scope_kept(patterns) and "logs/a.log" not in scope_kept(patterns)


def test_generated_excludes_agree_with_scopes(glob_tree):
    @hypothesis.settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @hypothesis.given(st.lists(glob_patterns, min_size=1, max_size=3).map(tuple))
    def check(patterns):
        try:
            scope_sql(Scope(exclude=patterns))
        except ScopeError:
            hypothesis.assume(False)
        assert_walk_agrees(glob_tree, patterns)

    check()


# where pathspec (and so this engine) and git read a pattern differently, on purpose or not
GIT_DIFFERS = {
    ("?.py",): "'?' is one character here, one byte in git ('文.py')",
    ("**", "!*.py", "src/pkg/*.py"): "pathspec ranks '!*.py' matching the directory 'x.py/' itself as a match on a parent",
}


def test_excludes_exclude_what_git_ignores(tmp_path):
    repo = write_tree(tmp_path, {f: "x = 1\n" for f in WALK_FILES})
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}  # no user-wide excludes file
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    for patterns in [(p,) for p in HAND_PATTERNS] + NEGATED_LISTS:
        (repo / ".git" / "info" / "exclude").write_text("\n".join(patterns) + "\n")
        out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--others", "--exclude-standard"], capture_output=True, check=True, env=env)
        git = set(filter(None, out.stdout.decode().split("\0")))
        walked = {f for f in walk_kept(repo, patterns) if not f.startswith(".git/")}
        assert (walked == git) != (patterns in GIT_DIFFERS), patterns
