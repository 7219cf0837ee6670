"""Find the files worth indexing: gitignore-aware, with every skip reported and counted."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from codeintel.config import WalkSettings
from codeintel.errors import InputError
from codeintel.indexing.languages import language_for, unindexable_kind

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
    commit = None
    name = path.name
    if _git(path, "rev-parse", "--is-inside-work-tree") == "true" and _git(path, "rev-parse", "--show-toplevel") == str(path):
        commit = _git(path, "rev-parse", "HEAD")
        name = _name_from_remote(_git(path, "remote", "get-url", "origin")) or name
    return RepoInfo(name=name, root=path, commit=commit)


def _spec(lines: list[str]) -> pathspec.PathSpec:
    return pathspec.GitIgnoreSpec.from_lines(lines)


def discover(root: Path, settings: WalkSettings) -> WalkResult:
    """Every file under root that passes gitignore, excludes and the size limit, in path order.

    Nested .gitignore files apply to their own subtree, as git does. Symlinks are not followed
    (no loops, nothing outside the repository).
    """
    result = WalkResult()
    excludes = _spec([*settings.exclude, *settings.extra_exclude])
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

    def visit(directory: Path, rel_dir: str) -> None:
        gitignore = directory / ".gitignore"
        pushed = False
        if settings.respect_gitignore and gitignore.is_file():
            try:
                ignore_stack.append((rel_dir, _spec(gitignore.read_text(encoding="utf-8", errors="replace").splitlines())))
                pushed = True
            except OSError:
                result.skipped.append(Skipped(rel_dir + ".gitignore", "unreadable"))
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            result.skipped.append(Skipped(rel_dir or ".", "unreadable"))
            entries = []
        for entry in entries:
            rel = rel_dir + entry.name
            try:
                if entry.is_symlink():
                    result.skipped.append(Skipped(rel, "symlink"))
                    continue
                is_dir = entry.is_dir()
                if ignored(rel, is_dir):
                    if not is_dir:
                        result.skipped.append(Skipped(rel, "ignored"))
                    continue
                if is_dir:
                    visit(Path(entry.path), rel + "/")
                    continue
                if not entry.is_file():
                    continue
                size = entry.stat().st_size
            except OSError:
                result.skipped.append(Skipped(rel, "unreadable"))
                continue
            kind = unindexable_kind(rel)
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
        if pushed:
            ignore_stack.pop()

    visit(root, "")
    return result


def load(candidate: Candidate, settings: WalkSettings) -> SourceFile | Skipped:
    """Read one file; binaries, minified files and files gone or unreadable come back as Skipped."""
    try:
        data = candidate.path.read_bytes()
    except FileNotFoundError:
        return Skipped(candidate.uri, "deleted during indexing")
    except OSError:
        return Skipped(candidate.uri, "unreadable")
    if len(data) > settings.max_file_bytes:
        return Skipped(candidate.uri, "too large")
    if b"\x00" in data[:_SNIFF_BYTES]:
        return Skipped(candidate.uri, "binary")
    text = data.decode("utf-8", errors="replace")
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
