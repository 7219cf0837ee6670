"""Reading live lines of indexed files: shape checks, the repository root as a hard boundary, the cap."""

from __future__ import annotations

import pytest

from codeintel.errors import InputError, NotIndexedError
from codeintel.storage.source import check_uri, read_lines


@pytest.mark.parametrize("uri", ["../etc/passwd", "a/../../b", "/etc/passwd", "C:/x", "a\\b", "a\x00b", "", "  "])
def test_uris_that_could_escape_are_refused(uri):
    with pytest.raises(InputError):
        check_uri(uri)


def test_uris_are_normalized():
    assert check_uri("./a//b/./c.py") == "a/b/c.py"


def test_lines_split_like_the_chunker_and_the_cap_applies(tmp_path):
    (tmp_path / "f.py").write_bytes(b"a\r\nb\x0bc\n\xffd\n" + b"x\n" * 10)
    lines = read_lines(tmp_path, "f.py", 1, None, max_lines=4)
    assert lines.lines == ["a\r", "b\x0bc", "\ufffdd", "x"]  # only \n splits: line numbers match the index
    assert (lines.total_lines, lines.end_line, lines.truncated) == (13, 4, True)
    tail = read_lines(tmp_path, "f.py", 12, 99)
    assert (tail.lines, tail.end_line, tail.truncated) == (["x", "x"], 13, False)


def test_symlinks_out_of_the_root_and_missing_files(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (tmp_path / "secret").write_text("s\n")
    (root / "inside.py").write_text("ok\n")
    (root / "link.py").symlink_to(tmp_path / "secret")
    (root / "ok_link.py").symlink_to(root / "inside.py")
    with pytest.raises(InputError, match="outside the repository root"):
        read_lines(root, "link.py")
    assert read_lines(root, "ok_link.py").lines == ["ok"]
    with pytest.raises(NotIndexedError):
        read_lines(root, "gone.py")
    with pytest.raises(InputError, match="past the end"):
        read_lines(root, "inside.py", 3)
