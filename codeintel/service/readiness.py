"""Which failure takes the service down and which only degrades it, decided in one place.

Down (503): nothing trustworthy can be answered — the index is unreadable, a FAISS shard or the
embedder is missing, or the parts disagree on the embedding dimension. Degraded (200): answers
still come, with less — BM25, the reranker or the LLM is out, a shard runs on CPU where a GPU was
expected, or Serve reports a deployment unhealthy (a replica that cannot start is invisible to a
probe another, healthy replica answers).
"""

from __future__ import annotations

__all__ = ["PROBES", "probe_error", "readiness", "status_headline"]

# the deployments probed (their ``info``), besides one probe per FAISS shard named faiss_shard_<i>
PROBES = ("embedder", "hydrator", "lexical", "reranker", "scope_store", "generator", "index_writer")


def probe_error(exc: BaseException) -> dict:
    """A failed probe's check entry: the exception's type and first line."""
    text = str(exc)
    return {"ok": False, "error": f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]}


def status_headline(message: str | None) -> str:
    """The last line of a Serve status message that is not a stack frame (Python or Java)."""
    lines = [line for line in (message or "").splitlines() if line.strip() and not line.startswith((" ", "\t"))]
    return lines[-1][:200] if lines else "no detail"


def readiness(checks: dict[str, dict], unhealthy: list[str] = (), expect_gpu: bool = False) -> dict:
    """``checks``: probe name -> {"ok": bool, ...info}; ``unhealthy``: what Serve itself reports.

    Returns {"mode": ready|degraded|down, "reasons": [...], "checks": {...}} with a dimensions check added."""
    checks = dict(checks)
    down: list[str] = []
    degraded: list[str] = []
    shards = {k: v for k, v in checks.items() if k.startswith("faiss_shard_")}
    if not checks["hydrator"]["ok"]:
        down.append("index unreadable")
    if not all(c["ok"] for c in shards.values()):
        down.append("a FAISS shard is unavailable")
    if not checks["embedder"]["ok"]:
        down.append("embedder unavailable")
    if checks["embedder"]["ok"] and checks["hydrator"]["ok"]:
        dims = {"embedder": checks["embedder"]["dim"], "parquet": checks["hydrator"]["parquet_dim"]}
        dims |= {name: c["dim"] for name, c in shards.items() if c["ok"]}
        checks["dimensions"] = {"ok": len(set(dims.values())) == 1, **dims}
        if not checks["dimensions"]["ok"]:
            down.append(f"dimension mismatch {dims}")
    if not checks["lexical"]["ok"]:
        degraded.append("lexical retriever down")
    if not checks["reranker"]["ok"]:
        degraded.append("reranker down")
    if not checks["generator"]["ok"]:
        degraded.append("generator down")
    elif checks["generator"].get("fallback"):
        degraded.append(checks["generator"]["fallback"])
    if not checks.get("scope_store", {"ok": True})["ok"]:
        degraded.append("session scopes unavailable")
    if not checks.get("index_writer", {"ok": True})["ok"]:
        degraded.append("reindexing unavailable")
    if expect_gpu:
        cpu = sorted(name for name, c in shards.items() if c["ok"] and not c.get("gpu"))
        if cpu:
            degraded.append(f"{', '.join(cpu)} on CPU instead of GPU")
    degraded += list(unhealthy)
    mode = "down" if down else "degraded" if degraded else "ready"
    return {"mode": mode, "reasons": down + degraded, "checks": checks}
