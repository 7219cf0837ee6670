"""MCP session ids: one per Mcp-Session-Id, bounded by least recent use."""

from __future__ import annotations

from types import SimpleNamespace

from codeintel.mcp.sessions import SessionIds


def ctx(transport_id: str | None) -> SimpleNamespace:
    return SimpleNamespace(headers={"mcp-session-id": transport_id} if transport_id else {})


def test_one_id_per_transport_session_lru_bounded():
    ids = SessionIds(max_sessions=2)
    a, b = ids.for_context(ctx("A")), ids.for_context(ctx("B"))
    assert len({a, b, ids.process}) == 3 and a.startswith("mcp-")
    assert ids.for_context(ctx(None)) == ids.process  # stdio / stateless HTTP: the process's id
    assert ids.for_context(ctx("A")) == a  # A is now the most recently used
    ids.for_context(ctx("C"))  # full: B goes
    assert ids.for_context(ctx("A")) == a and ids.for_context(ctx("B")) != b
