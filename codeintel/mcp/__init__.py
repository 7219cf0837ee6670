"""MCP server for coding agents: codeintel's search, cited answers and index tools, forwarded to a
running codeintel HTTP service, over stdio (agents spawn it) or streamable HTTP."""

from codeintel.mcp.server import TOOL_NAMES, build_server, serve

__all__ = ["TOOL_NAMES", "build_server", "serve"]
