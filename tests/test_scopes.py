from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from codeintel.errors import ScopeError
from codeintel.service.scopes import RedisScopeRegistry, ScopeCache, ScopeRegistry, create_registry
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


@pytest.fixture
def redis_url(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    port = 16379
    proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait()


def test_redis_registry_behaves_like_memory(redis_url):
    registry = create_registry(redis_url, ttl_s=60, max_sessions=2)
    assert isinstance(registry, RedisScopeRegistry)
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
