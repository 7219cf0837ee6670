"""Index directory layout, versioning and the atomic swap.

    INDEX_DIR/
      CURRENT                 name of the published version (replaced atomically)
      versions/<name>/        one complete, immutable index version
        manifest.json  chunks.parquet  files.parquet  catalog.duckdb  dense/  lexical/
      versions/.build-*/      a version being written; never read, removed when stale
      cache/embeddings.duckdb embeddings by content hash, shared by versions
      .lock                   held by the one indexer allowed at a time

A build writes a new version directory and publishes it by replacing CURRENT; until then readers
see the previous version, and an interrupted build leaves only a stale .build-* directory.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import msgspec

from codeintel import __version__
from codeintel.config import ChunkSettings, EmbeddingContract, WalkSettings
from codeintel.errors import IndexFormatError, IndexLockedError, IndexNotFoundError, InputError, VersionGoneError
from codeintel.text import is_utf8, printable

__all__ = ["FORMAT_VERSION", "RepoRecord", "IndexManifest", "IndexLayout", "VersionPaths", "VersionLease", "link_tree", "now_iso"]

FORMAT_VERSION = 2  # 2: the code graph (graph_defs/graph_refs, catalog tables defs/refs)
_KEEP_VERSIONS = 2


class RepoRecord(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    commit: str | None
    root: str


class IndexManifest(msgspec.Struct, forbid_unknown_fields=True):
    format_version: int
    codeintel_version: str
    contract: EmbeddingContract
    repo: RepoRecord
    built_at: str
    files: int
    chunks: int
    skipped: dict[str, int]
    walk: WalkSettings
    chunking: ChunkSettings
    dense_type: str
    dense_primary: int
    dense_secondary: int
    lexical_docs: int
    parent: str | None = None
    seconds: float = 0.0


class VersionPaths:
    """File names inside one version directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest = root / "manifest.json"
        self.chunks = root / "chunks.parquet"
        self.files = root / "files.parquet"
        self.graph_defs = root / "graph_defs.parquet"
        self.graph_refs = root / "graph_refs.parquet"
        self.catalog = root / "catalog.duckdb"
        self.dense = root / "dense"
        self.lexical = root / "lexical"

    @property
    def name(self) -> str:
        return self.root.name

    def read_manifest(self) -> IndexManifest:
        try:
            raw = self.manifest.read_bytes()
        except FileNotFoundError:
            raise IndexFormatError(f"index version {self.root} has no manifest.json") from None
        try:
            header = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise IndexFormatError(f"manifest {self.manifest} is not valid JSON") from None
        found = header.get("format_version") if isinstance(header, dict) else None
        if found != FORMAT_VERSION:
            raise IndexFormatError(
                f"index at {self.root} has format version {found!r}; this codeintel ({__version__}) reads "
                f"version {FORMAT_VERSION}: rebuild it with `codeintel index`"
            )
        try:
            return msgspec.json.decode(raw, type=IndexManifest)
        except msgspec.ValidationError as exc:
            raise IndexFormatError(f"manifest {self.manifest} is invalid: {exc}") from None

    def write_manifest(self, manifest: IndexManifest) -> None:
        self.manifest.write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))


class VersionLease:
    """A reader's shared lock on one version (flock on its manifest): pruning skips a leased version.

    Serving replicas hold one per version they have open, so a reindex never deletes files under a
    query in flight; the version goes at a later publish, once no replica holds it.
    """

    def __init__(self, paths: VersionPaths) -> None:
        try:
            self._handle = open(paths.manifest, "rb")
        except FileNotFoundError:
            raise VersionGoneError(f"index version {paths.name} is gone (replaced by a newer one)") from None
        fcntl.flock(self._handle, fcntl.LOCK_SH)  # waits only while a pruner holds it (the length of one rmtree)
        if not paths.manifest.exists():  # pruned between open and lock
            self._handle.close()
            raise VersionGoneError(f"index version {paths.name} is gone (replaced by a newer one)")

    def release(self) -> None:
        self._handle.close()


def _remove_unleased(path: Path) -> None:
    """Delete a version directory unless a reader leases it (then a later publish removes it)."""
    try:
        handle = open(path / "manifest.json", "rb")
    except FileNotFoundError:
        shutil.rmtree(path, ignore_errors=True)
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        shutil.rmtree(path, ignore_errors=True)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class IndexLayout:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not is_utf8(str(self.root.absolute())):  # DuckDB, Lucene and the manifest all need a UTF-8 path
            raise InputError(f"index path is not valid UTF-8: {printable(str(self.root.absolute()))}")
        self.current_file = self.root / "CURRENT"
        self.versions = self.root / "versions"
        self.cache_dir = self.root / "cache"

    # -- reading --------------------------------------------------------------------------
    def current_name(self) -> str | None:
        try:
            name = self.current_file.read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def current(self) -> VersionPaths:
        """The published version; raises when there is none."""
        if self.root.exists() and not self.root.is_dir():
            raise IndexNotFoundError(f"index path is not a directory: {self.root}")
        self._require_index_like()
        name = self.current_name()
        if name is None:
            raise IndexNotFoundError(f"no index at {self.root}: run `codeintel index PATH --index {self.root}` first")
        paths = VersionPaths(self.versions / name)
        if not paths.root.is_dir():
            raise IndexFormatError(f"CURRENT names version {name!r}, which is missing under {self.versions}")
        return paths

    def version(self, name: str) -> VersionPaths:
        """A published version by name (a request pinned to it); VersionGoneError once it was pruned."""
        paths = VersionPaths(self.versions / name)
        if name.startswith(".") or "/" in name or not paths.manifest.is_file():
            raise VersionGoneError(f"index version {name!r} is gone (replaced by a newer one)")
        return paths

    def current_or_none(self) -> VersionPaths | None:
        try:
            return self.current()
        except IndexNotFoundError:
            return None

    def _require_index_like(self) -> None:
        """Refuse a non-empty directory that holds anything but what an index holds."""
        if not self.root.is_dir():
            return
        foreign = [p.name for p in self.root.iterdir() if p.name not in {".lock", "cache", "versions"} and not p.name.startswith("CURRENT")]
        if foreign:
            raise IndexFormatError(f"{self.root} is not a codeintel index directory (it holds {sorted(foreign)[:3]})")

    # -- writing --------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive writer lock; a second indexer fails at once instead of waiting."""
        if self.root.exists() and not self.root.is_dir():
            raise IndexNotFoundError(f"index path is not a directory: {self.root}")
        self._require_index_like()
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / ".lock", "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IndexLockedError(f"another indexer is writing {self.root}") from None
            yield
        finally:
            handle.close()

    def new_build(self) -> VersionPaths:
        """A fresh directory for a version under construction (caller holds the lock)."""
        self.versions.mkdir(parents=True, exist_ok=True)
        for stale in self.versions.glob(".build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        stamp = time.time()  # names sort by build time (microseconds): replicas and pruning rely on that order
        name = f".build-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(stamp))}.{int(stamp % 1 * 1e6):06d}-{secrets.token_hex(3)}"
        root = self.versions / name
        root.mkdir()
        return VersionPaths(root)

    def publish(self, build: VersionPaths) -> VersionPaths:
        """Rename the build into place and swap CURRENT to it atomically."""
        final = self.versions / build.name.removeprefix(".build-")
        os.replace(build.root, final)
        _fsync_dir(self.versions)
        self.point_current(final.name)
        self._prune(keep=final.name)
        return VersionPaths(final)

    def point_current(self, name: str) -> None:
        """Swap CURRENT to a complete version directory (caller holds the lock)."""
        tmp = self.root / f"CURRENT.{secrets.token_hex(4)}.tmp"
        with open(tmp, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.current_file)
        _fsync_dir(self.root)

    def _prune(self, keep: str) -> None:
        """Keep the newest versions, and any older one a serving replica still leases (see VersionLease)."""
        versions = sorted((p for p in self.versions.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
        old = [p for p in versions if p.name != keep][: -(_KEEP_VERSIONS - 1) or None]
        for path in old:
            _remove_unleased(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_tree(src: Path, dst: Path) -> None:
    """Copy a directory by hard links where possible: Lucene and FAISS files are never rewritten in place."""

    def link_or_copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link_or_copy, ignore=shutil.ignore_patterns("write.lock"))
