from __future__ import annotations

import os

import pytest

from codeintel.config import WalkSettings
from codeintel.errors import InputError
from codeintel.indexing.walk import SourceFile, discover, load, repo_info

from conftest import git_init, write_tree


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
