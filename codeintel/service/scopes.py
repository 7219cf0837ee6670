"""Session scopes with a TTL and an LRU bound: one registry shared by every ingress replica.

The seed kept scopes in a per-process dict, so a scope set through one replica was unknown to the
next. Here the registry is plain Python; the Serve graph runs exactly one of it (a deployment with
one replica) and ingress replicas read it through a short local cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

import msgspec

from codeintel.storage.scope import Scope, validate_scope

__all__ = ["ScopeRegistry", "RedisScopeRegistry", "ScopeCache", "create_registry"]


class ScopeRegistry:
    def __init__(self, ttl_s: float = 3600.0, max_sessions: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, Scope]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def put(self, session_id: str, scope: Scope) -> Scope:
        validate_scope(scope)
        self._items[session_id] = (self._clock() + self.ttl_s, scope)
        self._items.move_to_end(session_id)
        while len(self._items) > self.max_sessions:
            self._items.popitem(last=False)
        return scope

    def get(self, session_id: str) -> Scope | None:
        item = self._items.get(session_id)
        if item is None or item[0] < self._clock():
            self._items.pop(session_id, None)
            self.misses += 1
            return None
        self._items.move_to_end(session_id)
        self._items[session_id] = (self._clock() + self.ttl_s, item[1])  # sliding expiry
        self.hits += 1
        return item[1]

    def delete(self, session_id: str) -> bool:
        return self._items.pop(session_id, None) is not None

    def __len__(self) -> int:
        return len(self._items)


class ScopeCache:
    """A replica-local cache in front of the shared registry; writes go through and invalidate."""

    def __init__(self, ttl_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._items: dict[str, tuple[float, Scope | None]] = {}

    def get(self, session_id: str) -> tuple[bool, Scope | None]:
        item = self._items.get(session_id)
        if item is None or item[0] < self._clock():
            return False, None
        return True, item[1]

    def put(self, session_id: str, scope: Scope | None) -> None:
        if len(self._items) > 4096:
            self._items.clear()
        self._items[session_id] = (self._clock() + self.ttl_s, scope)

    def drop(self, session_id: str) -> None:
        self._items.pop(session_id, None)


class RedisScopeRegistry:
    """The same registry on Redis, for scopes that outlive the Serve app or span clusters.

    Each scope is a key with a sliding TTL; a sorted set of last-access times enforces the LRU bound.
    """

    def __init__(self, url: str, ttl_s: float = 3600.0, max_sessions: int = 10_000, prefix: str = "codeintel:scope:") -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.ttl_s, self.max_sessions, self.prefix = ttl_s, max_sessions, prefix
        self._lru = prefix + "lru"
        self.hits = 0
        self.misses = 0

    def put(self, session_id: str, scope: Scope) -> Scope:
        validate_scope(scope)
        pipe = self.client.pipeline()
        pipe.set(self.prefix + session_id, msgspec.json.encode(scope), ex=int(self.ttl_s))
        pipe.zadd(self._lru, {session_id: time.time()})
        pipe.execute()
        excess = self.client.zcard(self._lru) - self.max_sessions
        if excess > 0:
            for member, _ in self.client.zpopmin(self._lru, excess):
                self.client.delete(self.prefix + member.decode())
        return scope

    def get(self, session_id: str) -> Scope | None:
        raw = self.client.getex(self.prefix + session_id, ex=int(self.ttl_s))
        if raw is None:
            self.client.zrem(self._lru, session_id)
            self.misses += 1
            return None
        self.client.zadd(self._lru, {session_id: time.time()})
        self.hits += 1
        return msgspec.json.decode(raw, type=Scope)

    def delete(self, session_id: str) -> bool:
        self.client.zrem(self._lru, session_id)
        return bool(self.client.delete(self.prefix + session_id))

    def __len__(self) -> int:
        return int(self.client.zcard(self._lru))


def create_registry(backend: str = "memory", ttl_s: float = 3600.0, max_sessions: int = 10_000):
    """``memory`` (default) or a ``redis://`` URL (needs the ``redis`` extra)."""
    if backend == "memory":
        return ScopeRegistry(ttl_s, max_sessions)
    if backend.startswith(("redis://", "rediss://", "unix://")):
        return RedisScopeRegistry(backend, ttl_s, max_sessions)
    raise ValueError(f"unknown scope backend {backend!r}: use 'memory' or a redis:// URL")
