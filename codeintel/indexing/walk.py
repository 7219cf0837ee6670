"""Find the files worth indexing: gitignore-aware, with every skip reported and counted."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from codeintel.config import WalkSettings
from codeintel.errors import InputError
from codeintel.globs import GlobError, glob_spec
from codeintel.indexing.languages import language_for, unindexable_kind
from codeintel.text import is_utf8, printable

__all__ = ["RepoInfo", "Candidate", "SourceFile", "Skipped", "WalkResult", "repo_info", "discover", "load"]

_SNIFF_BYTES = 8192
_DATA_LANGUAGES = frozenset({"json", "xml", "yaml"})


@dataclass(frozen=True)
class RepoInfo:
    name: str
    root: Path
    commit: str | None  # None for a plain folder


@dataclass(frozen=True)
class Candidate:
    path: Path
    uri: str  # repo-relative, '/'-separated
    size: int


@dataclass(frozen=True)
class SourceFile:
    uri: str
    lang: str
    text: str
    file_hash: str
    size: int


@dataclass(frozen=True)
class Skipped:
    uri: str
    reason: str


@dataclass
class WalkResult:
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://[^/]+/|[^/@:]+@[^/:]+:)(?P<path>.+?)(?:\.git)?/*$")


def _name_from_remote(remote: str | None) -> str | None:
    """owner/name from a URL-like remote (https://host/owner/name.git, git@host:owner/name); None for local paths."""
    match = _REMOTE.match(remote or "")
    if not match:
        return None
    parts = [p for p in match.group("path").split("/") if p not in ("", ".")]
    return "/".join(parts[-2:]) if parts else None


def repo_info(root: str | os.PathLike[str]) -> RepoInfo:
    """Name and commit of a git checkout, or just the folder name for a plain directory."""
    path = Path(root)
    if not path.exists():
        raise InputError(f"path does not exist: {root}")
    if not path.is_dir():
        raise InputError(f"not a directory: {root}")
    path = path.resolve()
    if not is_utf8(str(path)):
        raise InputError(f"repository path is not valid UTF-8: {printable(str(path))}")
    commit = None
    name = path.name
    if _git(path, "rev-parse", "--is-inside-work-tree") == "true" and _git(path, "rev-parse", "--show-toplevel") == str(path):
        commit = _git(path, "rev-parse", "HEAD")
        name = _name_from_remote(_git(path, "remote", "get-url", "origin")) or name
    return RepoInfo(name=name, root=path, commit=commit)


def _spec(lines: list[str]) -> pathspec.PathSpec:
    """A .gitignore's patterns; one that cannot be parsed is dropped, as git ignores it."""
    return glob_spec(lines, drop_malformed=True)


def _exclude_spec(settings: WalkSettings) -> pathspec.PathSpec:
    """Configured and --exclude patterns, by the engine search scopes use, so a glob means the same in both."""
    try:
        return glob_spec([*settings.exclude, *settings.extra_exclude])
    except GlobError as exc:
        raise InputError(f"malformed exclude pattern {exc.pattern!r}: {exc.reason}") from None


_GENERATED_ATTRIBUTES = frozenset(f"linguist-{a}{v}" for a in ("generated", "vendored") for v in ("", "=true"))


def _generated_spec(root: Path) -> pathspec.PathSpec:
    """Files the root .gitattributes marks ``linguist-generated`` or ``linguist-vendored``: the
    convention GitHub uses to keep generated output and vendored code out of diffs and search."""
    path = root / ".gitattributes"
    if not path.is_file() or path.is_symlink():
        return _spec([])
    patterns = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        pattern, *attributes = line.split() or ["#"]
        if not pattern.startswith("#") and _GENERATED_ATTRIBUTES.intersection(attributes):
            patterns.append(pattern)
    return _spec(patterns)


@dataclass
class _Frame:
    entries: list[os.DirEntry]
    rel_dir: str
    pushed: bool  # whether this directory pushed a .gitignore spec
    next: int = 0


def discover(root: Path, settings: WalkSettings) -> WalkResult:
    """Every file under root that passes gitignore, excludes and the size limit, in path order.

    Nested .gitignore files apply to their own subtree, as git does; files the root .gitattributes
    marks generated or vendored are skipped. Symlinks are not followed
    (no loops, nothing outside the repository); FIFOs, sockets and devices are skipped, and so are
    names that are not UTF-8. The walk keeps its own stack, so any nesting depth is fine.
    """
    root = Path(os.path.realpath(root))  # load() checks that what it opens is still the path found here
    result = WalkResult()
    excludes = _exclude_spec(settings)
    generated = _generated_spec(root) if settings.respect_gitattributes else _spec([])
    # (directory prefix relative to root, spec) for each .gitignore seen on the way down
    ignore_stack: list[tuple[str, pathspec.PathSpec]] = []

    def ignored(rel: str, is_dir: bool) -> bool:
        probe = rel + "/" if is_dir else rel
        if excludes.match_file(probe):
            return True
        for prefix, spec in ignore_stack:
            if probe.startswith(prefix) and spec.match_file(probe[len(prefix):]):
                return True
        return False

    def enter(directory: Path, rel_dir: str) -> _Frame:
        gitignore = directory / ".gitignore"
        pushed = False
        if settings.respect_gitignore and gitignore.is_file() and not gitignore.is_symlink():
            try:
                ignore_stack.append((rel_dir, _spec(gitignore.read_text(encoding="utf-8", errors="replace").splitlines())))
                pushed = True
            except OSError:
                result.skipped.append(Skipped(rel_dir + ".gitignore", "unreadable"))
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            result.skipped.append(Skipped(rel_dir or ".", "unreadable"))
            entries = []
        return _Frame(entries, rel_dir, pushed)

    stack = [enter(root, "")]
    while stack:
        frame = stack[-1]
        if frame.next == len(frame.entries):
            stack.pop()
            if frame.pushed:
                ignore_stack.pop()
            continue
        entry = frame.entries[frame.next]
        frame.next += 1
        rel = frame.rel_dir + entry.name
        if not is_utf8(entry.name):
            result.skipped.append(Skipped(printable(rel), "undecodable name"))
            continue
        try:
            if entry.is_symlink():
                result.skipped.append(Skipped(rel, "symlink"))
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if ignored(rel, is_dir):
                if not is_dir:
                    result.skipped.append(Skipped(rel, "ignored"))
                continue
            if is_dir:
                stack.append(enter(Path(entry.path), rel + "/"))
                continue
            if not entry.is_file(follow_symlinks=False):
                result.skipped.append(Skipped(rel, "special file"))
                continue
            size = entry.stat(follow_symlinks=False).st_size
        except OSError:
            result.skipped.append(Skipped(rel, "unreadable"))
            continue
        kind = unindexable_kind(rel) or ("generated" if generated.match_file(rel) else None)
        if kind:
            result.skipped.append(Skipped(rel, kind))
        elif size > settings.max_file_bytes:
            result.skipped.append(Skipped(rel, "too large"))
        elif size > settings.max_data_file_bytes and language_for(rel) in _DATA_LANGUAGES:
            result.skipped.append(Skipped(rel, "large data file"))
        elif size == 0:
            result.skipped.append(Skipped(rel, "empty"))
        else:
            result.candidates.append(Candidate(Path(entry.path), rel, size))
    return result


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
# share of undecodable characters above which a file is binary rather than text in a legacy encoding
_MAX_REPLACED_SHARE = 0.25


def _opened_path(fd: int, path: Path) -> str:
    """The path the kernel actually opened (Linux: race-free through /proc), else the resolved path."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def _read(candidate: Candidate, limit: int) -> bytes | Skipped:
    """The bytes of a regular file inside the repository, at most limit + 1 of them.

    The file may have changed since discover() saw it: it is opened without following a symlink
    (and without blocking on a FIFO), must still be a regular file at the path that was found (no
    directory on the way swapped for a symlink out of the repository), and is read only up to the
    size limit, however much it grew.
    """
    try:
        fd = os.open(candidate.path, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return Skipped(candidate.uri, "deleted during indexing")
    except OSError as exc:
        return Skipped(candidate.uri, "symlink" if exc.errno == errno.ELOOP else "unreadable")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Skipped(candidate.uri, "special file")
        opened = _opened_path(fd, candidate.path)
        if opened != os.fspath(candidate.path):
            return Skipped(candidate.uri, "deleted during indexing" if opened.endswith(" (deleted)") else "symlink")
        os.set_blocking(fd, True)
        parts = []
        remaining = limit + 1
        while remaining > 0:
            part = os.read(fd, min(remaining, 1 << 20))
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
        return b"".join(parts)
    except OSError:
        return Skipped(candidate.uri, "unreadable")
    finally:
        os.close(fd)


def load(candidate: Candidate, settings: WalkSettings) -> SourceFile | Skipped:
    """Read one file; binaries, minified files and files gone, swapped or unreadable come back as Skipped.

    Bytes that are not UTF-8 (a Latin-1 comment, a stray byte) are decoded as U+FFFD and the file is
    indexed: its identifiers are still searchable, and replacement never consumes a newline, so line
    numbers stay exact. A file where more than a quarter of the characters are undecodable is binary.
    """
    data = _read(candidate, settings.max_file_bytes)
    if isinstance(data, Skipped):
        return data
    if len(data) > settings.max_file_bytes:
        return Skipped(candidate.uri, "too large")
    if b"\x00" in data[:_SNIFF_BYTES]:
        return Skipped(candidate.uri, "binary")
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")  # U+FFFD written in the file is text
    if replaced > _MAX_REPLACED_SHARE * len(text):
        return Skipped(candidate.uri, "binary")
    lines = text.count("\n") + 1
    if len(text) / lines > settings.max_mean_line_chars:
        return Skipped(candidate.uri, "minified")
    if not text.strip():
        return Skipped(candidate.uri, "empty")
    return SourceFile(
        uri=candidate.uri,
        lang=language_for(candidate.uri) or "text",
        text=text,
        file_hash=hashlib.sha1(data).hexdigest(),
        size=len(data),
    )
