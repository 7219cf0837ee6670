from __future__ import annotations

import pytest

from codeintel.errors import ScopeError
from codeintel.service.scopes import RedisScopeRegistry, ScopeRegistry, create_registry
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


def test_lru_bound_and_sliding_expiry_with_a_fake_clock():
    clock = Clock()
    registry = ScopeRegistry(ttl_s=10, max_sessions=2, clock=clock)
    assert (registry.ttl_s, registry.max_sessions) == (10, 2)
    registry.put("a", Scope(languages=("python",)))
    clock.now = 5
    registry.put("b", Scope())
    clock.now = 8
    assert registry.get("a") is not None  # a: most recently used, expires at 18; b expires at 15
    registry.put("c", Scope())  # full: b, the least recently used, goes although a is older
    assert len(registry) == 2 and registry.get("b") is None
    clock.now = 17.9
    assert registry.get("a") is not None  # slid to 27.9
    clock.now = 18.5
    assert registry.get("c") is None and len(registry) == 1  # c was never read again: expired at 18
    assert registry.delete("a") is True and len(registry) == 0
    registry.put("d", Scope())
    clock.now = 40
    assert registry.delete("d") is False and len(registry) == 0  # an expired scope is gone already
    assert (registry.hits, registry.misses) == (2, 2)


def test_expired_entries_do_not_take_lru_slots():
    clock = Clock()
    registry = ScopeRegistry(ttl_s=10, max_sessions=2, clock=clock)
    registry.put("a", Scope())
    clock.now = 5
    registry.put("b", Scope())
    clock.now = 11  # a expired
    registry.put("c", Scope())
    assert registry.get("b") is not None and registry.get("c") is not None and registry.get("a") is None


def test_a_registry_holds_at_least_one_session():
    with pytest.raises(ValueError, match="max_sessions must be at least 1"):
        ScopeRegistry(max_sessions=0)


def test_invalid_scopes_are_rejected_and_delete_reports():
    registry = ScopeRegistry()
    with pytest.raises(ScopeError):
        registry.put("a", Scope(languages=("klingon",)))
    assert registry.delete("a") is False
    registry.put("a", Scope())
    assert registry.delete("a") is True


def test_redis_registry_behaves_like_memory(redis_url):
    registry = create_registry(redis_url, ttl_s=60, max_sessions=2)
    assert isinstance(registry, RedisScopeRegistry)
    registry.client.flushdb()  # the server is the session's: start from an empty registry
    registry.check()
    scope = Scope(include=("src/**",), languages=("python",))
    registry.put("a", scope)
    assert registry.get("a") == scope
    registry.put("b", Scope())
    registry.get("a")
    registry.put("c", Scope())  # evicts b, the least recently used
    assert registry.get("b") is None and registry.get("a") == scope and len(registry) == 2
    with pytest.raises(ScopeError):
        registry.put("x", Scope(languages=("klingon",)))
    assert registry.delete("a") and not registry.delete("a")
    other = create_registry(redis_url)  # a second replica sees the same scopes
    assert other.get("c") == Scope()


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown scope backend"):
        create_registry("memcached://x")
