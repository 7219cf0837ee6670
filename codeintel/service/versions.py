"""The index versions a serving process holds open, each under a lease, shared by the calls using it.

A request is pinned to the version CURRENT names when it starts, and every call it makes names that
version, so a reindex that publishes mid-request never mixes two versions in one answer. A process
opens a version on its first call, keeps at most ``keep`` open, and closes an older one once no
call uses it; the lease keeps the indexer from deleting files a call still reads.

Where versions come from is a :class:`VersionSource`: the writer's index directory on this node
(leases are flocks), or an artifact store every node reads (each process pulls into its node's cache
and keeps lease objects fresh in the store, so the writer's prune skips what any node serves).
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Generic, Iterator, Protocol, TypeVar

from codeintel.config import StoreSettings
from codeintel.errors import StoreError
from codeintel.storage.layout import IndexLayout, IndexManifest, VersionLease, VersionPaths
from codeintel.storage.store import ArtifactStore, VersionCache, holder_id

__all__ = ["VersionPool", "VersionSource", "LocalVersions", "StoreVersions", "version_source"]


class VersionSource(Protocol):
    def current(self) -> str: ...

    def acquire(self, name: str) -> tuple[VersionPaths, Callable[[], None]]:
        """The files of version ``name``, held until the returned release is called."""
        ...


class LocalVersions:
    """An index directory on this node: CURRENT read from disk, a flock lease per open version."""

    def __init__(self, index_dir: str) -> None:
        self.layout = IndexLayout(index_dir)

    def current(self) -> str:
        return self.layout.current().name

    def acquire(self, name: str) -> tuple[VersionPaths, Callable[[], None]]:
        paths = self.layout.version(name)
        return paths, VersionLease(paths).release


class StoreVersions:
    """An artifact store: versions pulled into this node's cache, leased in the store while held.

    CURRENT is trusted for ``current_ttl_s`` (a reindex shows within that); a daemon thread renews
    this process's leases every third of ``lease_ttl_s``, and a crashed process's leases go stale."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.store = ArtifactStore(settings.uri)
        self.holder = holder_id()
        self._cache: VersionCache | None = None
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}
        self._current: tuple[float, str] | None = None
        self._renewer: threading.Thread | None = None

    @property
    def cache(self) -> VersionCache:
        if self._cache is None:  # the ingress only reads CURRENT: it needs no cache directory
            self._cache = VersionCache(self.store, Path(self.settings.cache_dir), self.settings.keep_versions)
        return self._cache

    def current(self) -> str:
        now = time.monotonic()
        if self._current is None or now - self._current[0] > self.settings.current_ttl_s:
            name = self.store.current()
            if name is None:
                raise StoreError(f"the store {self.store.uri} has no current version: publish one with `codeintel index --store`")
            self._current = (now, name)
        return self._current[1]

    def acquire(self, name: str) -> tuple[VersionPaths, Callable[[], None]]:
        self._hold(name)  # leased before the pull: the writer's prune skips it from now on
        stack = ExitStack()
        try:
            path = stack.enter_context(self.cache.use(name))
        except BaseException:
            self._drop(name)
            raise

        def release() -> None:
            stack.close()
            self._drop(name)

        return VersionPaths(path), release

    def _hold(self, name: str) -> None:
        with self._lock:  # the lease object's write and delete happen in the order of holds and drops
            if name not in self._held:
                self.store.lease(name, self.holder)
            self._held[name] = self._held.get(name, 0) + 1
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew, name="store-leases", daemon=True)
                self._renewer.start()

    def _drop(self, name: str) -> None:
        with self._lock:
            self._held[name] -= 1
            if self._held[name] == 0:
                del self._held[name]
                self.store.release(name, self.holder)

    def _renew(self) -> None:
        while True:
            time.sleep(self.settings.lease_ttl_s / 3)
            with self._lock:  # never renews a lease a drop has just given back
                for name in self._held:
                    try:
                        self.store.lease(name, self.holder)
                    except Exception:  # the store is unreachable now: the next round tries again
                        pass


def version_source(index_dir: str, store: StoreSettings) -> VersionSource:
    """The artifact store when one is configured (every node serves from it), else the index directory."""
    return StoreVersions(store) if store.uri else LocalVersions(index_dir)


S = TypeVar("S")


class _Open(Generic[S]):
    def __init__(self, state: S, release: Callable[[], None]) -> None:
        self.state, self.release = state, release
        self.refs = 0
        self.retired = False


class VersionPool(Generic[S]):
    """``open`` makes a version's state (engines, connections); ``close`` frees it once retired and idle."""

    def __init__(self, index_dir: str, open: Callable[[VersionPaths, IndexManifest], S],
                 close: Callable[[S], None] = lambda state: None, keep: int = 2, store: StoreSettings = StoreSettings()) -> None:
        self._open_state, self._close_state, self.keep = open, close, keep
        self._lock = threading.Lock()
        self._open: dict[str, _Open[S]] = {}
        self._opening: dict[str, threading.Lock] = {}
        self.index_dir, self.store = index_dir, store
        self.source = version_source(index_dir, store)
        with self.use(None):  # open CURRENT now: a broken index fails at start, not on the first request
            pass

    @contextmanager
    def use(self, name: str | None) -> Iterator[S]:
        """The state of version ``name`` (None: CURRENT), held open for the duration of the block.

        Raises VersionGoneError when ``name`` was pruned before this process opened it."""
        entry = self._acquire(name)
        try:
            yield entry.state
        finally:
            with self._lock:
                entry.refs -= 1
                self._close_if_idle(entry)

    def switch(self, index_dir: str) -> None:
        """Serve another index directory from now on; versions in use close when their calls end.
        (Served from a store, a replica follows the store's CURRENT instead.)"""
        if index_dir == self.index_dir or self.store.uri:
            return
        with self._lock:
            self._retire_all()
            self.index_dir, self.source = index_dir, version_source(index_dir, self.store)
        with self.use(None):
            pass

    def versions(self) -> list[str]:
        with self._lock:
            return sorted(self._open)

    def close(self) -> None:
        """Retire every open version (each closes once its calls end): releases leases at shutdown."""
        with self._lock:
            self._retire_all()

    def _retire_all(self) -> None:
        retired, self._open = list(self._open.values()), {}
        for entry in retired:
            entry.retired = True
            self._close_if_idle(entry)

    def _acquire(self, name: str | None) -> _Open[S]:
        """The open entry of ``name``, one reference taken. A version is pulled and opened outside the
        pool's lock (a pull from a store takes seconds): calls on versions already open never wait for it,
        and calls on the same version wait for the one opener."""
        with self._lock:
            name = name or self.source.current()
            if (entry := self._take(name)) is not None:
                return entry
            source, opening = self.source, self._opening.setdefault(name, threading.Lock())
        with opening:
            with self._lock:
                if (entry := self._take(name)) is not None:
                    return entry
            try:
                paths, release = source.acquire(name)
                try:
                    state = self._open_state(paths, paths.read_manifest())
                except BaseException:
                    release()
                    raise
            except BaseException:
                with self._lock:
                    self._opening.pop(name, None)
                raise
            with self._lock:  # installed and no longer opening in one step: no second opener slips in
                self._opening.pop(name, None)
                entry = _Open(state, release)
                entry.refs = 1
                if source is not self.source or name in self._open:  # switched, or another opener won: serve this call, then close
                    entry.retired = True
                    return entry
                self._open[name] = entry
                for old in sorted(self._open)[: -self.keep]:  # names sort by build time
                    retired = self._open.pop(old)
                    retired.retired = True
                    self._close_if_idle(retired)
                return entry

    def _take(self, name: str) -> _Open[S] | None:
        entry = self._open.get(name)
        if entry is not None:
            entry.refs += 1
        return entry

    def _close_if_idle(self, entry: _Open[S]) -> None:
        if entry.retired and entry.refs == 0:
            self._close_state(entry.state)
            entry.release()
