from __future__ import annotations

import pytest

from codeintel.errors import ScopeError
from codeintel.service.scopes import ScopeCache, ScopeRegistry
from codeintel.storage.scope import Scope


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ttl_expiry_and_sliding_refresh():
    clock = Clock()
    registry = ScopeRegistry(ttl_s=10, clock=clock)
    registry.put("a", Scope(languages=("python",)))
    clock.now = 9
    assert registry.get("a") == Scope(languages=("python",))  # refreshes expiry to 19
    clock.now = 18
    assert registry.get("a") is not None
    clock.now = 40
    assert registry.get("a") is None and len(registry) == 0
    assert (registry.hits, registry.misses) == (2, 1)


def test_lru_bound_evicts_least_recently_used():
    registry = ScopeRegistry(max_sessions=2)
    registry.put("a", Scope())
    registry.put("b", Scope())
    registry.get("a")
    registry.put("c", Scope())
    assert registry.get("b") is None and registry.get("a") is not None and registry.get("c") is not None


def test_invalid_scopes_are_rejected_and_delete_reports():
    registry = ScopeRegistry()
    with pytest.raises(ScopeError):
        registry.put("a", Scope(languages=("klingon",)))
    assert registry.delete("a") is False
    registry.put("a", Scope())
    assert registry.delete("a") is True


def test_local_cache_expires_quickly():
    clock = Clock()
    cache = ScopeCache(ttl_s=1.0, clock=clock)
    assert cache.get("s") == (False, None)
    cache.put("s", None)
    assert cache.get("s") == (True, None)
    clock.now = 2
    assert cache.get("s") == (False, None)
