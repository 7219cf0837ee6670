"""Prometheus metrics of the HTTP service (served at /metrics by each ingress replica)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServiceMetrics"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _RayMirror:
    """The same request/stage series on Ray's metrics endpoint (the dashboard's Prometheus), when in Ray."""

    def __init__(self) -> None:
        from ray.util import metrics

        self.requests = metrics.Counter("codeintel_requests", "HTTP requests", tag_keys=("endpoint", "status"))
        self.stage = metrics.Histogram("codeintel_stage_s", "Search stage latency", boundaries=list(_BUCKETS), tag_keys=("stage",))


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, ray_mirror: bool = False) -> None:
        self.ray = _RayMirror() if ray_mirror else None
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("codeintel_requests_total", "HTTP requests", ["endpoint", "status"], registry=r)
        self.latency = Histogram("codeintel_request_seconds", "HTTP request latency", ["endpoint"], buckets=_BUCKETS, registry=r)
        self.stage = Histogram("codeintel_stage_seconds", "Search stage latency", ["stage"], buckets=_BUCKETS, registry=r)
        self.retriever_hits = Counter("codeintel_retriever_hits_total", "Hits returned per retriever", ["retriever"], registry=r)
        self.retriever_failures = Counter("codeintel_retriever_failures_total", "Retrievers skipped", ["retriever", "reason"], registry=r)
        self.scope_lookups = Counter("codeintel_scope_lookups_total", "Session scope lookups", ["result"], registry=r)
        self.version_retries = Counter("codeintel_version_retries_total", "Searches re-run because a reindex pruned their index version", registry=r)
        self.faiss_gpu = Gauge("codeintel_faiss_shards_on_gpu", "FAISS shards running on GPU", registry=r)
        self.faiss_shards = Gauge("codeintel_faiss_shards", "FAISS shards", registry=r)
        self.backend_batch = Histogram("codeintel_backend_batch_calls", "Calls carried by one call to a back end (coalesced)", ["backend"],
                                       buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=r)

    def request(self, endpoint: str, status: int, seconds: float | None = None) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        if seconds is not None:
            self.latency.labels(endpoint).observe(seconds)
        if self.ray:
            self.ray.requests.inc(tags={"endpoint": endpoint, "status": str(status)})

    def observe_search(self, timings_ms: dict[str, float], retrievers: dict[str, int], skipped: dict[str, str]) -> None:
        for stage, ms in timings_ms.items():
            if stage != "total":
                self.stage.labels(stage).observe(ms / 1000)
                if self.ray:
                    self.ray.stage.observe(ms / 1000, tags={"stage": stage})
        for name, n in retrievers.items():
            self.retriever_hits.labels(name).inc(n)
        for name, reason in skipped.items():
            self.retriever_failures.labels(name, reason.split(":")[0]).inc()
