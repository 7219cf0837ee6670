"""Session scopes with a TTL and an LRU bound: one registry shared by every ingress replica.

A scope set through one ingress replica must apply to the very next request on any replica, so
there is no replica-local copy at all: the Serve graph runs exactly one registry (a deployment with
one replica, in memory or in front of Redis) and every request with a session id reads it. That
read costs one in-cluster call (8 ms p50 on 2 cores, benchmarks/results/scope-*.md), and a stale
read is impossible rather than unlikely.
"""

from __future__ import annotations

import time
from typing import Callable

import msgspec
from cachetools import TTLCache

from codeintel.storage.scope import Scope, validate_scope

__all__ = ["ScopeRegistry", "RedisScopeRegistry", "create_registry"]


class ScopeRegistry:
    """Scopes by session id; a get slides the expiry, and past ``max_sessions`` the least recently
    used goes. cachetools' TTLCache does the expiry and the LRU order."""

    def __init__(self, ttl_s: float = 3600.0, max_sessions: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, not {max_sessions}")
        self._items: TTLCache[str, Scope] = TTLCache(maxsize=max_sessions, ttl=ttl_s, timer=clock)
        self.hits = 0
        self.misses = 0

    @property
    def ttl_s(self) -> float:
        return self._items.ttl

    @property
    def max_sessions(self) -> int:
        return int(self._items.maxsize)

    def put(self, session_id: str, scope: Scope) -> Scope:
        validate_scope(scope)
        self._items[session_id] = scope
        return scope

    def get(self, session_id: str) -> Scope | None:
        scope = self._items.get(session_id)
        if scope is None:
            self.misses += 1
            return None
        self._items[session_id] = scope  # sliding expiry: setting again restarts the TTL
        self.hits += 1
        return scope

    def delete(self, session_id: str) -> bool:
        """Whether a live scope was there (an expired one counts as gone already)."""
        return self._items.pop(session_id, None) is not None

    def __len__(self) -> int:
        return len(self._items)

    def check(self) -> None:
        """Nothing to probe: the scopes live in this process, which answering the check proves alive."""


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

    def check(self) -> None:
        self.client.ping()


def create_registry(backend: str = "memory", ttl_s: float = 3600.0, max_sessions: int = 10_000):
    """``memory`` (default) or a ``redis://`` URL (needs the ``redis`` extra)."""
    if backend == "memory":
        return ScopeRegistry(ttl_s, max_sessions)
    if backend.startswith(("redis://", "rediss://", "unix://")):
        return RedisScopeRegistry(backend, ttl_s, max_sessions)
    raise ValueError(f"unknown scope backend {backend!r}: use 'memory' or a redis:// URL")
