"""Index versions in an artifact store that every node can read: a local directory or S3.

The store is the only thing nodes share (no shared POSIX filesystem, no flock across machines)::

    STORE/
      CURRENT                      name of the published version (one small object, replaced whole)
      versions/<name>/...          the version's immutable files, as the writer built them
      versions/<name>/CHECKSUMS    {relative path: [size, sha256]}, written after every file
      leases/<name>/<holder>       a serving process holds version <name> (refreshed; stale after a TTL)

A version counts as published once its CHECKSUMS exists, so a reader never sees half an upload;
CURRENT moves only after that. A replica pulls the version it is asked for into its node-local
cache, verifying every file against CHECKSUMS in a temporary directory that is renamed into place,
and serves from there (:class:`VersionCache`, with least-recently-used eviction of the versions no
request holds). Pinning across nodes needs no file lock: a process serving a version keeps a lease
object of its own fresh in the store, and :meth:`ArtifactStore.prune` (the writer's, after each
publish) deletes only versions that are neither CURRENT, among the newest ``retain``, nor leased
within the TTL. Store URIs are pyarrow's: ``file:///abs/path``, a plain path, or
``s3://bucket/prefix?endpoint_override=host:port&scheme=http`` (credentials from the usual AWS
environment variables or the URI).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import socket
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import msgspec
import pyarrow.fs as pafs

from codeintel.config import StoreSettings
from codeintel.errors import StoreError, VersionGoneError
from codeintel.storage.layout import IndexLayout

__all__ = ["ArtifactStore", "VersionCache", "CHECKSUMS", "publish_current", "seed_index", "holder_id"]

CHECKSUMS = "CHECKSUMS"
_CHUNK = 8 << 20


def holder_id() -> str:
    """Names one serving process in lease objects: which node, which process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


class ArtifactStore:
    """Publish, list and fetch index versions in one store."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        try:
            if "://" in uri:
                self.fs, root = pafs.FileSystem.from_uri(uri)
            else:
                self.fs, root = pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a malformed or unknown URI
            raise StoreError(f"cannot open artifact store {uri!r}: {exc}") from None
        self.root = root.rstrip("/")
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(self.root, recursive=True)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    # -- writer side ------------------------------------------------------------------------------
    def publish(self, version_dir: Path, name: str | None = None, *, make_current: bool = True) -> str:
        """Upload a built version directory (files first, CHECKSUMS last), then point CURRENT at it."""
        version_dir = Path(version_dir)
        name = name or version_dir.name
        if not version_dir.is_dir():
            raise StoreError(f"no version directory at {version_dir}")
        sums: dict[str, list] = {}
        for path in sorted(p for p in version_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(version_dir).as_posix()
            target = self._path("versions", name, rel)
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            with path.open("rb") as src, self.fs.open_output_stream(target) as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            sums[rel] = [path.stat().st_size, _sha256_file(path)]
        self._put(self._path("versions", name, CHECKSUMS), msgspec.json.encode(sums))
        if make_current:
            self.set_current(name)
        return name

    def set_current(self, name: str) -> None:
        if name not in self.versions():
            raise StoreError(f"version {name!r} is not in the store {self.uri}")
        self._put(self._path("CURRENT"), name.encode() + b"\n")

    def delete(self, name: str) -> None:
        """Remove a version (never the current one): its CHECKSUMS first, so no reader starts on it."""
        if name == self.current():
            raise StoreError(f"version {name!r} is current in {self.uri}; publish another first")
        for path in (self._path("versions", name, CHECKSUMS), self._path("versions", name), self._path("leases", name)):
            try:
                (self.fs.delete_file if path.endswith(CHECKSUMS) else self.fs.delete_dir)(path)
            except FileNotFoundError:
                pass

    # -- leases: which versions serving processes hold, across nodes -------------------------------
    def lease(self, name: str, holder: str) -> None:
        """Say (again) that ``holder`` serves version ``name``; the object's mtime is the heartbeat."""
        self.fs.create_dir(self._path("leases", name), recursive=True)
        self._put(self._path("leases", name, holder), b"")

    def release(self, name: str, holder: str) -> None:
        try:
            self.fs.delete_file(self._path("leases", name, holder))
        except FileNotFoundError:
            pass

    def leased(self, ttl_s: float) -> dict[str, list[str]]:
        """Versions with a lease refreshed within ``ttl_s`` seconds, and their holders."""
        infos = self.fs.get_file_info(pafs.FileSelector(self._path("leases"), recursive=True, allow_not_found=True))
        now, live = time.time(), {}
        for info in infos:
            if info.type != pafs.FileType.File or info.mtime is None:
                continue
            if now - info.mtime.timestamp() < ttl_s:
                version, holder = info.path.rsplit("/", 2)[-2:]
                live.setdefault(version, []).append(holder)
        return live

    def prune(self, retain: int, ttl_s: float) -> list[str]:
        """Delete versions that are not CURRENT, not among the newest ``retain`` and not leased within
        ``ttl_s`` (a crashed replica's lease goes stale and stops protecting its version)."""
        names, current, leased = self.versions(), self.current(), self.leased(ttl_s)
        doomed = [n for n in names[: -max(1, retain)] if n != current and n not in leased]
        for name in doomed:
            self.delete(name)
        return doomed

    def _put(self, path: str, data: bytes) -> None:
        """One small object, replaced whole: an S3 PUT is atomic; locally, write aside and rename."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            tmp = f"{path}.{secrets.token_hex(4)}.tmp"
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, path)
        else:
            with self.fs.open_output_stream(path) as f:
                f.write(data)

    # -- reader side ------------------------------------------------------------------------------
    def current(self) -> str | None:
        try:
            with self.fs.open_input_stream(self._path("CURRENT")) as f:
                return f.read().decode().strip() or None
        except FileNotFoundError:
            return None
        except OSError as exc:  # unreachable, refused, bad credentials: every request's pin says so
            raise StoreError(f"cannot read CURRENT from the store {self.uri}: {exc}") from None

    def versions(self) -> list[str]:
        """Published versions (those whose CHECKSUMS is written), oldest name first."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self._path("versions"), allow_not_found=True))
        except FileNotFoundError:
            return []
        names = [i.base_name for i in infos if i.type == pafs.FileType.Directory]
        published = self.fs.get_file_info([self._path("versions", n, CHECKSUMS) for n in names])
        return sorted(n for n, info in zip(names, published, strict=True) if info.type == pafs.FileType.File)

    def checksums(self, name: str) -> dict[str, tuple[int, str]]:
        try:
            with self.fs.open_input_stream(self._path("versions", name, CHECKSUMS)) as f:
                raw = msgspec.json.decode(f.read(), type=dict[str, tuple[int, str]])
        except FileNotFoundError:
            raise VersionGoneError(f"version {name!r} is not in the store {self.uri}") from None
        return raw

    def fetch(self, name: str, target: Path) -> None:
        """Download version ``name`` into ``target`` (which must not exist), verifying every file;
        a partial or corrupt download leaves nothing at ``target``."""
        sums = self.checksums(name)
        tmp = target.parent / f".pull-{target.name}-{secrets.token_hex(4)}"
        tmp.mkdir(parents=True)
        try:
            for rel, (size, sha) in sums.items():
                dst = tmp / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with self.fs.open_input_stream(self._path("versions", name, rel)) as src, dst.open("wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
                except FileNotFoundError:
                    raise VersionGoneError(f"version {name!r} lost {rel} in the store {self.uri}") from None
                if dst.stat().st_size != size or _sha256_file(dst) != sha:
                    raise StoreError(f"checksum mismatch for {rel} of version {name!r} in {self.uri}")
            try:
                os.replace(tmp, target)
            except OSError:
                if not target.is_dir():
                    raise
                # another process of this node pulled and verified it first: use theirs
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def publish_current(index_dir: Path, store: ArtifactStore, settings: StoreSettings = StoreSettings()) -> str:
    """Upload the index directory's published version to the store (once), make it CURRENT there,
    then prune the store by the settings' policy."""
    version = IndexLayout(index_dir).current().root
    if version.name in store.versions():
        store.set_current(version.name)  # an up-to-date re-index: nothing new to upload
    else:
        store.publish(version)
    store.prune(settings.retain_versions, settings.lease_ttl_s)
    return version.name


def seed_index(index_dir: Path, store: ArtifactStore) -> str | None:
    """Give an empty index directory the store's CURRENT version, so a writer on a fresh node
    updates it incrementally instead of rebuilding; None when there is nothing to seed from."""
    layout = IndexLayout(index_dir)
    name = store.current()
    if name is None or layout.current_or_none() is not None:
        return None
    with layout.lock():
        store.fetch(name, layout.versions / name)
        layout.point_current(name)
    return name


class VersionCache:
    """A node's local copies of store versions: pulled on first use, kept while a request holds them,
    evicted least recently used beyond ``keep`` versions.

    Replica processes of one node may share the cache directory: a request holds a shared ``flock``
    on the version's lease file (node-local, so flock is sound here), and eviction removes only a
    version whose lease it can take exclusively.
    """

    def __init__(self, store: ArtifactStore, cache_dir: Path, keep: int = 2) -> None:
        self.store, self.dir, self.keep = store, Path(cache_dir).expanduser(), max(1, keep)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pulling: dict[str, threading.Lock] = {}
        self._pins: dict[str, int] = {}
        self._used: dict[str, float] = {}

    @contextmanager
    def use(self, name: str | None = None) -> Iterator[Path]:
        """The local directory of version ``name`` (None: the store's CURRENT), pinned for the block."""
        name = name or self.store.current()
        if name is None:
            raise StoreError(f"the store {self.store.uri} has no current version")
        lease = self._lease(name, fcntl.LOCK_SH)  # before the pull: no process evicts it under us
        try:
            path = self._ensure(name)
            with self._lock:
                self._pins[name] = self._pins.get(name, 0) + 1
                self._used[name] = time.monotonic()
        except BaseException:
            os.close(lease)
            raise
        try:
            yield path
        finally:
            with self._lock:
                self._pins[name] -= 1
            os.close(lease)
            self.evict()

    def _lease(self, name: str, mode: int) -> int:
        """An open lease file of version ``name``, locked in ``mode`` (the file stays: unlinking it would
        let two processes lock two different files for one version)."""
        fd = os.open(self.dir / f".{name}.lease", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _ensure(self, name: str) -> Path:
        path = self.dir / name
        if path.is_dir():
            return path
        with self._lock:
            pulling = self._pulling.setdefault(name, threading.Lock())
        with pulling:  # one pull per version, however many requests wait for it
            if not path.is_dir():
                self.store.fetch(name, path)
        return path

    def cached(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def pinned(self) -> list[str]:
        """Versions a request of this process holds now (the store learns of them through leases)."""
        with self._lock:
            return sorted(n for n, pins in self._pins.items() if pins > 0)

    def evict(self) -> list[str]:
        """Remove least recently used versions beyond ``keep``, never a pinned one."""
        removed = []
        with self._lock:
            names = self.cached()
            idle = sorted((n for n in names if not self._pins.get(n)), key=lambda n: self._used.get(n, 0.0))
            while len(names) - len(removed) > self.keep and idle:
                victim = idle.pop(0)
                try:
                    lease = self._lease(victim, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another process of this node serves it
                    continue
                try:
                    shutil.rmtree(self.dir / victim, ignore_errors=True)
                finally:
                    os.close(lease)
                self._used.pop(victim, None)
                removed.append(victim)
        return removed
