"""Closed tool schemas and one-sentence tool errors on top of the SDK's MCPServer.

The SDK's argument models ignore arguments they do not name; an agent that passes a filter the tool
does not have would get unscoped results that look scoped. Here every tool's model forbids extra
arguments (its schema says ``additionalProperties: false``) and the error names them with what the
tool accepts. Errors codeintel raises on purpose reach the agent with their text; a bug is logged
with its traceback and reported as an internal error.
"""

# no `from __future__ import annotations`: the SDK reads annotations at runtime

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations
from pydantic import ConfigDict, ValidationError

from codeintel.errors import CodeIntelError

__all__ = ["StrictMCPServer", "argument_errors", "strict_tool"]


def strict_tool(fn: Callable, description: str, annotations: ToolAnnotations) -> Tool:
    """A Tool whose argument model forbids unknown arguments (the schema says additionalProperties: false)."""
    tool = Tool.from_function(fn, description=description, annotations=annotations, structured_output=False)
    base = tool.fn_metadata.arg_model
    strict = type(base.__name__, (base,), {"model_config": ConfigDict(extra="forbid", arbitrary_types_allowed=True), "__module__": base.__module__})
    tool.fn_metadata.arg_model = strict
    schema = strict.model_json_schema(by_alias=True)
    schema.pop("title", None)  # pydantic's titles repeat the names: tokens every agent pays for
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    tool.parameters = schema
    return tool


def argument_errors(tool: str, error: ValidationError, accepted: list[str]) -> str:
    unknown = [str(e["loc"][0]) for e in error.errors() if e["type"] == "extra_forbidden" and e["loc"]]
    parts = []
    if unknown:
        parts.append(f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                     f"(this tool accepts: {', '.join(accepted) or 'no arguments'})")
    for e in error.errors():
        if e["type"] != "extra_forbidden":
            where = ".".join(str(p) for p in e["loc"]) or "arguments"
            parts.append(f"{where}: {e['msg']}")
    return f"{tool}: invalid arguments: " + "; ".join(parts)


class StrictMCPServer(MCPServer):
    """MCPServer whose tool errors read as one sentence with the cause, never a bare 'Error executing tool'."""

    accepted: dict[str, list[str]]

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None):
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                raise ToolError(argument_errors(name, cause, self.accepted.get(name, []))) from cause
            if isinstance(cause, CodeIntelError):
                raise ToolError(f"{name}: {cause}") from cause
            if isinstance(exc, UnexpectedToolError) and isinstance(cause, Exception):  # a bug: logged with its traceback
                raise UnexpectedToolError(f"{name}: internal error {type(cause).__name__}: {cause}") from cause
            raise
