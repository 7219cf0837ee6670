"""One X-Session-ID per MCP session, so each agent's scope (set_scope) is its own."""

from __future__ import annotations

import uuid

from cachetools import LRUCache
from mcp.server.mcpserver import Context

__all__ = ["SessionIds"]


class SessionIds:
    """The X-Session-ID sent for an MCP session, a fresh uuid per session.

    Streamable HTTP sessions are told apart by their Mcp-Session-Id header; stdio (one agent per
    process) and stateless HTTP requests share this process's id.
    """

    def __init__(self, max_sessions: int = 10_000) -> None:
        self.process = f"mcp-{uuid.uuid4().hex}"
        self._by_transport: LRUCache[str, str] = LRUCache(maxsize=max_sessions)  # past the bound the least recently used goes

    def for_context(self, ctx: Context) -> str:
        try:
            headers = ctx.headers
        except ValueError:  # outside a request
            headers = None
        transport_id = headers.get("mcp-session-id") if headers else None
        if not transport_id:
            return self.process
        session = self._by_transport.get(transport_id)  # a hit refreshes its recency
        if session is None:
            session = self._by_transport[transport_id] = f"mcp-{uuid.uuid4().hex}"
        return session
