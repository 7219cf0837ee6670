"""The index versions a serving process holds open, each under a lease, shared by the calls using it.

A request is pinned to the version CURRENT names when it starts, and every call it makes names that
version, so a reindex that publishes mid-request never mixes two versions in one answer. A process
opens a version on its first call, keeps at most ``keep`` open, and closes an older one once no
call uses it; the lease keeps the indexer from deleting files a call still reads.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Generic, Iterator, TypeVar

from codeintel.storage.layout import IndexLayout, IndexManifest, VersionLease, VersionPaths

__all__ = ["VersionPool"]

S = TypeVar("S")


class _Open(Generic[S]):
    def __init__(self, state: S, lease: VersionLease) -> None:
        self.state, self.lease = state, lease
        self.refs = 0
        self.retired = False


class VersionPool(Generic[S]):
    """``open`` makes a version's state (engines, connections); ``close`` frees it once retired and idle."""

    def __init__(self, index_dir: str, open: Callable[[VersionPaths, IndexManifest], S],
                 close: Callable[[S], None] = lambda state: None, keep: int = 2) -> None:
        self._open_state, self._close_state, self.keep = open, close, keep
        self._lock = threading.Lock()
        self._open: dict[str, _Open[S]] = {}
        self.index_dir = index_dir
        with self.use(None):  # open CURRENT now: a broken index fails at start, not on the first request
            pass

    @contextmanager
    def use(self, name: str | None) -> Iterator[S]:
        """The state of version ``name`` (None: CURRENT), held open for the duration of the block.

        Raises VersionGoneError when ``name`` was pruned before this process opened it."""
        with self._lock:
            entry = self._acquire(name)
        try:
            yield entry.state
        finally:
            with self._lock:
                entry.refs -= 1
                self._close_if_idle(entry)

    def switch(self, index_dir: str) -> None:
        """Serve another index directory from now on; versions in use close when their calls end."""
        if index_dir == self.index_dir:
            return
        with self._lock:
            retired, self._open, self.index_dir = list(self._open.values()), {}, index_dir
            for entry in retired:
                entry.retired = True
                self._close_if_idle(entry)
        with self.use(None):
            pass

    def versions(self) -> list[str]:
        with self._lock:
            return sorted(self._open)

    def _acquire(self, name: str | None) -> _Open[S]:
        layout = IndexLayout(self.index_dir)
        name = name or layout.current().name
        entry = self._open.get(name)
        if entry is None:
            paths = layout.version(name)
            lease = VersionLease(paths)
            try:
                state = self._open_state(paths, paths.read_manifest())
            except BaseException:
                lease.release()
                raise
            entry = self._open[name] = _Open(state, lease)
        entry.refs += 1
        for old in sorted(self._open)[: -self.keep]:  # names sort by build time
            retired = self._open.pop(old)
            retired.retired = True
            self._close_if_idle(retired)
        return entry

    def _close_if_idle(self, entry: _Open[S]) -> None:
        if entry.retired and entry.refs == 0:
            self._close_state(entry.state)
            entry.lease.release()
